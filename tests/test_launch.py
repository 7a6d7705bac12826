"""experiments/tpu_vm.sh and the accelerator switch of experiments/setup.sh, without gcloud.

TRILEMMA_DRY_RUN=1 makes the launch script print its gcloud commands; these
tests check that what each worker would run is the train command as given.
"""

import glob
import os
import re
import shlex
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TPU_VM = os.path.join(ROOT, 'experiments', 'tpu_vm.sh')


def _dry_run(*args, **env):
  return subprocess.run(['bash', TPU_VM, *args], capture_output=True, text=True, cwd=ROOT,
                        env={**os.environ, 'TRILEMMA_DRY_RUN': '1', **env})


def _worker_command(printed: str) -> list[str]:
  words = shlex.split(printed)
  assert words[:5] == ['gcloud', 'compute', 'tpus', 'tpu-vm', 'ssh']
  assert '--worker=all' in words
  (command,) = [w[len('--command='):] for w in words if w.startswith('--command=')]
  return shlex.split(command)


def test_train_runs_the_same_distributed_command_on_every_worker():
  out = _dry_run('train', 'my-tpu', 'us-central2-b', '--config',
                 'trilemma_jax/families/ddgan/config.py:tfds:cifar10', '--workdir', '/mnt/shared/run 1',
                 '--config.train.steps=10', TPU_PROJECT='my-project')
  assert out.returncode == 0, out.stderr
  words = shlex.split(out.stdout)
  assert words[5:7] == ['my-tpu', '--zone=us-central2-b']
  assert '--project=my-project' in words
  command = _worker_command(out.stdout)
  start = command.index('.venv/bin/python')
  assert command[start:] == [
      '.venv/bin/python', 'experiments/train.py', '--distributed', '--config',
      'trilemma_jax/families/ddgan/config.py:tfds:cifar10', '--workdir', '/mnt/shared/run 1',
      '--config.train.steps=10']


def test_setup_installs_this_commit_with_the_tpu_plugin_on_every_worker():
  out = _dry_run('setup', 'my-tpu', 'europe-west4-a', TRILEMMA_COMMIT='abc123',
                 TRILEMMA_REPO='https://example.org/fork.git')
  assert out.returncode == 0, out.stderr
  command = ' '.join(_worker_command(out.stdout))
  assert 'git clone -q https://example.org/fork.git' in command
  assert 'git checkout -q abc123' in command
  assert 'TRILEMMA_ACCELERATOR=tpu bash experiments/setup.sh' in command


def test_train_without_a_shared_workdir_or_with_a_wrong_action_is_refused():
  out = _dry_run('train', 'my-tpu', 'zone', '--config', 'x.py:grid25')
  assert out.returncode == 2 and '--workdir' in out.stderr
  out = _dry_run('start', 'my-tpu', 'zone')
  assert out.returncode == 2 and 'experiments/tpu_vm.sh setup' in out.stderr


def test_setup_refuses_an_unknown_accelerator_before_touching_anything():
  out = subprocess.run(['bash', os.path.join(ROOT, 'experiments', 'setup.sh')],
                       capture_output=True, text=True, cwd=ROOT,
                       env={**os.environ, 'TRILEMMA_ACCELERATOR': 'rocm'})
  assert out.returncode == 2
  assert "must be tpu, cuda12, cuda13 or unset, got 'rocm'" in out.stderr


def test_every_config_spec_the_docs_give_loads():
  """Each ``families/<f>/config.py:<dataset>`` written in the README, docs/ and the
  scripts names a dataset the config knows (a TPU command once named ``cifar10``)."""
  from trilemma_jax import config as config_lib

  files = [os.path.join(ROOT, 'README.md'), *glob.glob(os.path.join(ROOT, 'docs', '*.md')),
           *glob.glob(os.path.join(ROOT, 'experiments', '*.sh'))]
  pattern = re.compile(r'trilemma_jax/families/\w+/config\.py:[\w:]+')
  specs = sorted({m.group(0) for f in files for m in pattern.finditer(open(f).read())})
  assert any(s.endswith(':tfds:cifar10') for s in specs)
  for spec in specs:
    config = config_lib.load_config_file(os.path.join(ROOT, spec))
    assert config.data.name == spec.split(':', 1)[1], spec


def _doc_commands() -> list[tuple[str, str]]:
  """(file, command) for each line of README.md and docs/*.md, continuations joined."""
  files = [os.path.join(ROOT, 'README.md'), *glob.glob(os.path.join(ROOT, 'docs', '*.md'))]
  return [(os.path.basename(f), line) for f in files
          for line in open(f).read().replace('\\\n', ' ').splitlines()]


def test_every_profile_and_family_the_docs_name_exists():
  """Each ``--profile`` a doc's command names (built in, ``ddgan_profiles:<NAME>``, or a
  ``for p in NAME...`` loop over investigation profiles) loads, and each ``--families``
  beside it is among that profile's families: a renamed profile or entry breaks the
  commands that reproduce the docs' figures."""
  import importlib.util
  from trilemma_jax import profiles

  path = os.path.join(ROOT, 'experiments', 'investigations', 'ddgan_profiles.py')
  spec = importlib.util.spec_from_file_location('ddgan_profiles_for_docs', path)
  investigations = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(investigations)

  def load(name):
    if name.startswith('ddgan_profiles:'):
      profile = getattr(investigations, name.split(':', 1)[1], None)
      assert isinstance(profile, profiles.Profile), f'{name}: no such Profile in {path}'
      return profile
    return profiles.get_profile(name)

  checked = set()
  for doc, line in _doc_commands():
    loop = re.search(r'\bfor \w+ in ([^;]*);\s*do', line)
    if loop:  # the loops of the docs run investigation profiles: NAME or NAME:<something>
      for word in loop.group(1).split():
        name = word.split(':', 1)[0]
        if re.fullmatch(r'[A-Z][A-Z0-9]*_[A-Z0-9_]+', name):
          load('ddgan_profiles:' + name)
          checked.add(name)
    match = re.search(r'--profile[ =]([\w.:]+)', line)
    if not match or match.group(1).endswith(':'):
      continue  # ddgan_profiles:$p in a loop, checked above
    if ':' in match.group(1) and not match.group(1).startswith('ddgan_profiles:'):
      continue  # '<module>:<attribute>' of the reader's own (README's toy family)
    name = match.group(1)
    profile = load(name)
    checked.add(name)
    families = re.search(r'--families[ =]([\w,.-]+)', line)
    if families:
      unknown = set(families.group(1).split(',')) - set(profile.families)
      assert not unknown, f'{doc}: {name} has no families {sorted(unknown)}: {line.strip()}'
  # The summary page's commands are among those checked.
  assert {'ddgan_profiles:GRID25_T4_FINE_MORE', 'stacked_long', 'GRID25_T8_ENERGY_OCTAVES'} <= checked
