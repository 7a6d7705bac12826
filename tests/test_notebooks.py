"""The notebooks run top to bottom (tiny budgets), importing the library only."""

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = os.path.join(REPO, 'notebooks')


def _script(path):
  cells = json.load(open(path))['cells']
  lines = []
  for cell in cells:
    if cell['cell_type'] != 'code':
      continue
    for line in ''.join(cell['source']).splitlines():
      if line.lstrip().startswith(('!', '%')):
        continue  # shell / magics: the set-up is done by experiments/setup.sh here
      lines.append(line)
    lines.append('')
  return '\n'.join(lines)


@pytest.mark.slow
@pytest.mark.parametrize('name', sorted(n for n in os.listdir(NOTEBOOKS) if n.endswith('.ipynb')))
def test_notebook_runs(name, tmp_path, host_devices_env):
  script = tmp_path / 'notebook.py'
  script.write_text('import matplotlib\nmatplotlib.use("Agg")\n' + _script(
      os.path.join(NOTEBOOKS, name)))
  env = {**host_devices_env, 'TRILEMMA_NOTEBOOK_STEPS': '20',
         'TRILEMMA_NOTEBOOK_WORKDIR': str(tmp_path / 'work'),
         'TRILEMMA_CACHE_DIR': str(tmp_path / 'cache')}
  result = subprocess.run([sys.executable, str(script)], cwd=NOTEBOOKS, env=env,
                          capture_output=True, text=True, timeout=900)
  assert result.returncode == 0, result.stderr[-3000:]
  assert '| grid25 | ddgan |' in result.stdout
