"""The notebooks run top to bottom with the small budget, offline, importing the library only.

Executed by nbclient in a fresh kernel of this venv, without the cells tagged ``colab`` (the
Colab-only installs); a cell that raises fails the test. The trilemma notebook's runs are then
picked up by the main job (``experiments/trilemma.py``), which must reuse them.
"""

import json
import math
import os
import re
import subprocess
import sys

import nbformat
import pytest
from nbclient import NotebookClient
from test_report import REQUIRED, WITH_SPREAD

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = os.path.join(REPO, 'notebooks')
NAMES = sorted(n for n in os.listdir(NOTEBOOKS) if n.endswith('.ipynb'))
# What only makes sense on Colab: such a cell must carry the 'colab' tag.
COLAB_ONLY = re.compile(r'^\s*[!%]|google\.colab|drive\.mount', re.M)


def _tags(cell):
  return cell.get('metadata', {}).get('tags', [])


def _run(name, tmp_path, env):
  """Executes notebook ``name`` without its colab cells; returns the text of every output."""
  nb = nbformat.read(os.path.join(NOTEBOOKS, name), as_version=4)
  nb.cells = [c for c in nb.cells if 'colab' not in _tags(c)]
  # The cache root is the session's (conftest): the notebooks compile some of the same
  # programs (the grid25 DDGAN's train step, for one), as they do on a user's machine.
  env = {**env, 'TRILEMMA_NOTEBOOK_BUDGET': 'small',
         'TRILEMMA_NOTEBOOK_WORKDIR': str(tmp_path / 'work')}
  client = NotebookClient(nb, timeout=600, kernel_name='python3',
                          resources={'metadata': {'path': NOTEBOOKS}})
  client.execute(env=env)
  texts = []
  for cell in nb.cells:
    for out in cell.get('outputs', []):
      texts.append(out.get('text', ''))
      texts.extend(str(v) for k, v in out.get('data', {}).items() if k.startswith('text/'))
  return '\n'.join(texts)


@pytest.mark.parametrize('name', NAMES)
def test_notebook_is_stored_clean_and_tags_its_colab_cells(name):
  nb = nbformat.read(os.path.join(NOTEBOOKS, name), as_version=4)
  nbformat.validate(nb)
  code = [c for c in nb.cells if c.cell_type == 'code']
  for cell in code:
    if COLAB_ONLY.search(cell.source):
      assert 'colab' in _tags(cell), f'{name}: untagged Colab-only cell:\n{cell.source}'
    assert not cell.get('outputs') and cell.get('execution_count') is None, (
        f'{name} is stored with outputs; clear them before committing')
  assert any('colab' in _tags(c) for c in code), f'{name} has no Colab install cell'
  # The notebooks use the library, not copies of it: no network or loss defined in a cell.
  assert not re.search(r'^\s*(class \w+\(nn\.Module\)|def \w*loss\w*\()', '\n'.join(
      c.source for c in code), re.M), name


def test_readme_links_every_notebook_with_a_colab_badge():
  readme = open(os.path.join(REPO, 'README.md')).read()
  url = re.search(r'^url = (\S+)$', open(os.path.join(REPO, 'setup.cfg')).read(), re.M).group(1)
  base = url.replace('https://github.com/', 'https://colab.research.google.com/github/')
  for name in NAMES:
    assert f'({base}/blob/main/notebooks/{name})' in readme, name
    assert f'(notebooks/{name})' in readme, name
  for name in ('quickstart', 'trilemma', 'ddgan_explained'):
    assert f'{name}.ipynb' in NAMES


@pytest.mark.slow
def test_quickstart_runs(tmp_path, host_devices_env):
  out = _run('quickstart.ipynb', tmp_path, host_devices_env)
  for family in ('vae', 'gan', 'ddpm', 'ddgan'):
    assert f'{family} trained to step 100' in out
    assert f'| grid25 | {family} |' in out


@pytest.mark.slow
def test_ddgan_explained_runs(tmp_path, host_devices_env):
  out = _run('ddgan_explained.ipynb', tmp_path, host_devices_env)
  assert 'trained to step 100' in out
  rows = {name: (float(hq), float(kl)) for name, hq, kl in re.findall(
      r'^(exact steps, T = 4|Gaussian steps, T = 4|Gaussian steps, T = 1000)'
      r'\s+\d+\s+\d+/25\s+([\d.]+)\s+([\d.]+)', out, re.M)}
  # The exact chain samples the data; Gaussian steps do with 1000 steps, not with
  # grid25's 4 (about 57 %HQ and reverse KL 0.6 on its time grid p = 1.5).
  assert len(rows) == 3, out[-2000:]
  assert rows['exact steps, T = 4'][0] > 97 > 75 > rows['Gaussian steps, T = 4'][0]
  assert rows['exact steps, T = 4'][1] < 0.02 < 0.3 < rows['Gaussian steps, T = 4'][1]
  assert rows['Gaussian steps, T = 1000'][0] > 97


@pytest.mark.slow
def test_trilemma_notebook_then_the_main_job_reuses_its_runs(tmp_path, host_devices_env):
  """The notebook's small budget is the quick profile; the CLI on its workdir only reports."""
  out = _run('trilemma.ipynb', tmp_path, host_devices_env)
  for dataset in ('grid25', 'digits'):
    assert f'| {dataset} | ddgan |' in out
    assert re.search(rf'^{dataset}:\n\s+quality led by', out, re.M), out[-2000:]
  workdir = tmp_path / 'work' / 'trilemma_small'
  assert (workdir / 'trilemma.png').stat().st_size > 10_000
  report_json = json.load(open(workdir / 'report.json'))
  rows = report_json['rows']
  settings = {(r['dataset'], r['family'], r['sampler']) for r in rows}
  for dataset in ('grid25', 'digits'):
    for family in ('vae', 'gan', 'ddgan'):
      assert any(s[0] == dataset and s[1] == family for s in settings), (dataset, family)
    ddpm = sorted(s[2] for s in settings if s[0] == dataset and s[1] == 'ddpm')
    assert len(ddpm) == 3 and 'ancestral' in ddpm, ddpm
  for r in rows:
    for key in REQUIRED:
      assert key in r, key
    for key in WITH_SPREAD:
      assert f'{key}_std' in r, key
    assert r['seeds'] == [0]
    assert r['samples_per_second'] > 0 and r['nfe'] >= 1
    if r['dataset'] == 'grid25':
      assert r['max_modes'] == 25 and 0 <= r['modes'] <= 25
    else:
      assert r['fd'] is not None and math.isfinite(r['fd'])
    if r['family'] in ('vae', 'ddpm'):
      assert r['nll_bits_per_dim'] is not None
  assert 'digits_ddgan.png' in os.listdir(workdir / 'samples')
  runs = report_json['runs']
  assert len(runs) == 2 * 4  # datasets x families, one seed
  assert all(r['train_seconds'] > 0 and r['evaluation_seconds'] > 0 for r in runs)

  # The main job on the same workdir and profile reuses every run and evaluation.
  evals = sorted(workdir.glob('runs/*/*/seed_0/eval.json'))
  assert len(evals) == 8
  before = {p: os.path.getmtime(p) for p in evals}
  subprocess.run([sys.executable, os.path.join(REPO, 'experiments', 'trilemma.py'),
                  f'--workdir={workdir}', '--profile=quick'], check=True, env=host_devices_env,
                 capture_output=True)
  assert {p: os.path.getmtime(p) for p in evals} == before
  again = json.load(open(workdir / 'report.json'))
  assert again['rows'] == rows and again['runs'] == runs
