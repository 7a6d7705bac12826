r"""Reference timing: diffusers' UNet2DModel train step (PyTorch, CPU) on the benchmark's shapes.

Runs in its own environment (experiments/reference/setup.sh makes .venv-reference
with PyTorch's CPU build and diffusers) and prints one JSON object:

  .venv-reference/bin/python experiments/reference/diffusers_unet.py [--cases unet_28x28,unet_8x8]

Each case mirrors a U-Net case of trilemma_jax.benchmark (same image size,
channels per level, residual blocks per level, attention level, group count,
batch) and times forward, MSE loss, backward and an Adam update, as the DDPM
train step does: the median over timed windows after a warm-up.
"""

import argparse
import json
import statistics
import time

import torch
from diffusers import UNet2DModel

CASES = {
    # name: (image side, channels, block channels, attention at the last level, batch)
    'unet_28x28': (28, 1, (32, 64, 64), True, 128),
    'unet_8x8': (8, 1, (32, 64), True, 128),
}


def make_model(side, channels, widths, attention):
  down = ['DownBlock2D'] * (len(widths) - 1) + ['AttnDownBlock2D' if attention else 'DownBlock2D']
  up = ['AttnUpBlock2D' if attention else 'UpBlock2D'] + ['UpBlock2D'] * (len(widths) - 1)
  return UNet2DModel(sample_size=side, in_channels=channels, out_channels=channels,
                     layers_per_block=1, block_out_channels=widths, down_block_types=down,
                     up_block_types=up, norm_num_groups=8, attention_head_dim=widths[-1])


def time_case(name, windows, steps):
  side, channels, widths, attention, batch = CASES[name]
  torch.manual_seed(0)
  model = make_model(side, channels, widths, attention)
  optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
  x = torch.randn(batch, channels, side, side)
  noise = torch.randn_like(x)
  t = torch.randint(0, 1000, (batch,))

  def step():
    optimizer.zero_grad(set_to_none=True)
    loss = torch.nn.functional.mse_loss(model(x, t).sample, noise)
    loss.backward()
    optimizer.step()

  for _ in range(2):
    step()
  seconds = []
  for _ in range(windows):
    start = time.perf_counter()
    for _ in range(steps):
      step()
    seconds.append((time.perf_counter() - start) / steps)
  per_step = statistics.median(seconds)
  return {'case': name, 'steps_per_second': 1.0 / per_step,
          'examples_per_second': batch / per_step, 'batch_size': batch,
          'params': sum(p.numel() for p in model.parameters())}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--cases', default=','.join(CASES))
  parser.add_argument('--windows', type=int, default=5)
  parser.add_argument('--steps', type=int, default=3)
  args = parser.parse_args()
  rows = [time_case(name, args.windows, args.steps) for name in args.cases.split(',')]
  print(json.dumps({'torch': torch.__version__, 'threads': torch.get_num_threads(),
                    'cases': rows}))


if __name__ == '__main__':
  main()
