"""Pictures of samples: an image grid for image data, a scatter plot for 2-D points."""

from __future__ import annotations

import math
import os

import numpy as np
from PIL import Image


def image_grid(images: np.ndarray, *, columns: int | None = None, pad: int = 1,
               scale: int = 1) -> np.ndarray:
  """Tiles ``[N, H, W, C]`` images in [-1, 1] into one uint8 ``[rows*H', cols*W', C]`` picture.

  One-channel images become grey; three channels are shown as RGB (stacked
  digits then show each digit in its own colour).
  """
  images = np.asarray(images, np.float32)
  if images.ndim != 4:
    raise ValueError(f'image_grid expects [N, H, W, C] images, got shape {images.shape}.')
  n, h, w, c = images.shape
  columns = columns or int(math.ceil(math.sqrt(n)))
  rows = int(math.ceil(n / columns))
  pixels = np.clip(np.round((images + 1.0) * 127.5), 0, 255).astype(np.uint8)
  grid = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad, c), 255, np.uint8)
  for i in range(n):
    r, col = divmod(i, columns)
    y, x = pad + r * (h + pad), pad + col * (w + pad)
    grid[y:y + h, x:x + w] = pixels[i]
  if scale > 1:
    grid = np.repeat(np.repeat(grid, scale, axis=0), scale, axis=1)
  return grid


def save_image_grid(images: np.ndarray, path: str, **kwargs) -> None:
  """Writes :func:`image_grid` of ``images`` to ``path`` (PNG)."""
  grid = image_grid(images, **kwargs)
  if grid.shape[-1] == 1:
    grid = grid[..., 0]
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  Image.fromarray(grid).save(path)


def save_scatter(points: np.ndarray, path: str, *, means: np.ndarray | None = None,
                 title: str | None = None, reference: np.ndarray | None = None) -> None:
  """Scatter plot of ``[N, 2]`` points, with the mixture means marked when given."""
  # A standalone Figure: pyplot's backend and state (a notebook's inline plots) are left alone.
  from matplotlib.figure import Figure

  points = np.asarray(points)
  fig = Figure(figsize=(4.5, 4.5), dpi=110)
  ax = fig.subplots()
  if reference is not None:
    ax.scatter(reference[:, 0], reference[:, 1], s=2, c='0.8', label='data')
  ax.scatter(points[:, 0], points[:, 1], s=2, c='tab:blue', alpha=0.6, label='samples')
  if means is not None:
    ax.scatter(means[:, 0], means[:, 1], s=30, marker='x', c='tab:red', label='modes')
  if means is not None:
    lo, hi = means.min() - 1.0, means.max() + 1.0
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
  ax.set_aspect('equal')
  if title:
    ax.set_title(title, fontsize=9)
  fig.tight_layout()
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  fig.savefig(path)


def save_samples(samples: np.ndarray, path: str, *, kind: str,
                 means: np.ndarray | None = None, title: str | None = None) -> None:
  """Grid for ``kind='image'``, scatter plot for ``kind='points'``."""
  if kind == 'image':
    save_image_grid(samples, path, scale=4 if samples.shape[1] <= 16 else 2)
  elif kind == 'points':
    save_scatter(samples, path, means=means, title=title)
  else:
    raise ValueError(f"Unknown data kind {kind!r}; expected 'image' or 'points'.")
