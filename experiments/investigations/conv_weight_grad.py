r"""Investigation: the kernel gradient of a 3x3 convolution as per-tap matmuls on XLA:CPU.

  .venv/bin/python experiments/investigations/conv_weight_grad.py [--repeats 7]

XLA lowers the kernel gradient of a convolution to another convolution (the
batch as contracted feature axis, the image as the window). This script writes
it instead as one matmul per kernel tap,

    dW[i, j] = x_pad[:, i:i+H, j:j+W, :]^T @ dy      (contracted over N*H*W),

checks that every gradient agrees with XLA's (input and kernel, first and second
order), then times the DDPM U-Net's loss and gradient at 28x28 (widths 32, 64,
64) and 8x8 (32, 64), batch 128, with XLA's kernel gradient and with the
per-tap one, alternating, and prints the medians, their ratio and the matmul
peak of the same run. Findings: docs/performance.md.
"""

import argparse
import functools
import statistics
import time
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from trilemma_jax import benchmark
from trilemma_jax.families.ddpm import nets as ddpm_nets

Pads = tuple[tuple[int, int], tuple[int, int]]
_DIMENSION_NUMBERS = ('NHWC', 'HWIO', 'NHWC')


def _xla_conv(x, kernel, strides, padding):
  return lax.conv_general_dilated(
      x, kernel, strides, padding, lhs_dilation=(1, 1), rhs_dilation=(1, 1),
      dimension_numbers=_DIMENSION_NUMBERS, feature_group_count=1, precision=None)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv_per_tap_grad(x: jax.Array, kernel: jax.Array, pads: Pads) -> jax.Array:
  return _xla_conv(x, kernel, (1, 1), pads)


def _conv_per_tap_grad_fwd(x, kernel, pads):
  # Calling the custom_vjp function itself (not _xla_conv) keeps the per-tap
  # rule when this forward pass is differentiated again, as in a gradient of
  # a gradient.
  return _conv_per_tap_grad(x, kernel, pads), (x, kernel)


def _conv_per_tap_grad_bwd(pads, residuals, dy):
  x, kernel = residuals
  kh, kw = kernel.shape[:2]
  (lo_h, hi_h), (lo_w, hi_w) = pads
  # The input gradient of a stride-1 conv is the forward conv of dy with the
  # spatially flipped, in/out-swapped kernel and padding (k-1-lo, k-1-hi):
  # what XLA's own transpose computes. Routing it through _conv_per_tap_grad
  # gives its kernel gradient (needed by second-order derivatives) the per-tap
  # form too.
  flipped = jnp.swapaxes(kernel[::-1, ::-1], 2, 3)
  dx_pads = ((kh - 1 - lo_h, kh - 1 - hi_h), (kw - 1 - lo_w, kw - 1 - hi_w))
  if min(p for pair in dx_pads for p in pair) >= 0:
    dx = _conv_per_tap_grad(dy, flipped, dx_pads)
  else:  # padding wider than the kernel: the transpose crops, which only XLA's form does
    dx = _xla_conv(dy, flipped, (1, 1), dx_pads)
  dw = per_tap_weight_grad(x, dy, kernel.shape[:2], pads=pads)
  return dx.astype(x.dtype), dw.astype(kernel.dtype)


_conv_per_tap_grad.defvjp(_conv_per_tap_grad_fwd, _conv_per_tap_grad_bwd)


def per_tap_weight_grad(x: jax.Array, dy: jax.Array, kernel_size: Sequence[int], *,
                        pads: Pads) -> jax.Array:
  """Kernel gradient of a stride-1 NHWC/HWIO convolution as one matmul per tap.

  Args:
    x: ``[N, H, W, C]`` input of the convolution.
    dy: ``[N, H', W', O]`` cotangent of its output.
    kernel_size: ``(kh, kw)``.
    pads: ``((lo_h, hi_h), (lo_w, hi_w))``, non-negative, with
      ``H' = H + lo_h + hi_h - kh + 1`` (and likewise for W').

  Returns:
    ``[kh, kw, C, O]``, in ``dy``'s dtype.
  """
  kh, kw = kernel_size
  c, o = x.shape[-1], dy.shape[-1]
  _, h_out, w_out, _ = dy.shape
  x_pad = jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
  dy_2d = dy.reshape(-1, o)
  acc = jnp.promote_types(dy.dtype, jnp.float32)
  # One [N*H'*W', C]^T @ [N*H'*W', O] dot per tap. Each shifted view has to be
  # copied out before its dot either way; the forms that do all taps in one
  # dot (an im2col concatenation, a stack with a batched dot) copied more, or
  # along the minor axis, and ran slower on XLA:CPU.
  taps = [
      lax.dot_general(x_pad[:, i:i + h_out, j:j + w_out].reshape(-1, c), dy_2d,
                      (((0,), (0,)), ((), ())), preferred_element_type=acc)
      for i in range(kh) for j in range(kw)
  ]
  return jnp.stack(taps).reshape(kh, kw, c, o).astype(dy.dtype)


def per_tap_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """A stride-1 'SAME' NHWC/HWIO convolution whose kernel gradient is per-tap matmuls."""
  pads = tuple(lax.padtype_to_pads(x.shape[1:3], kernel.shape[:2], (1, 1), 'SAME'))
  return _conv_per_tap_grad(x, kernel, pads)


def check_gradients() -> None:
  """Per-tap and XLA gradients agree, first and second order (an R1-like penalty)."""
  for shape, (k, c, o) in [((2, 7, 6, 3), (3, 3, 5)), ((1, 8, 8, 1), (3, 1, 4)),
                           ((3, 5, 5, 4), (1, 4, 2))]:
    x = jax.random.normal(jax.random.PRNGKey(0), shape)
    w = jax.random.normal(jax.random.PRNGKey(1), (k, k, c, o))
    plain = lambda x, w: _xla_conv(x, w, (1, 1), 'SAME')
    loss = lambda conv: (lambda x, w: jnp.sum(jnp.tanh(conv(x, w)) ** 2))
    r1 = lambda conv: (lambda x, w: jnp.sum(jax.grad(loss(conv))(x, w) ** 2))
    for make in (loss, r1):
      a = jax.grad(make(plain), argnums=(0, 1))(x, w)
      b = jax.grad(make(per_tap_conv), argnums=(0, 1))(x, w)
      for u, v in zip(a, b):
        np.testing.assert_allclose(v, u, rtol=2e-4, atol=2e-4 * float(jnp.max(jnp.abs(u))))


def unet_step(per_tap: bool, size: int):
  """The U-Net's jitted loss and gradient with one kind of 3x3 conv, and its arguments."""
  original = ddpm_nets._conv3x3

  class PerTapConv(ddpm_nets.nn.Conv):
    @ddpm_nets.nn.compact
    def __call__(self, inputs):
      kernel = self.param('kernel', self.kernel_init,
                          tuple(self.kernel_size) + (inputs.shape[-1], self.features))
      bias = self.param('bias', self.bias_init, (self.features,))
      return per_tap_conv(inputs, kernel) + bias

  def conv3x3(features, *, dtype, zero=False, strides=1, name=None):
    if strides != 1 or not per_tap:
      return original(features, dtype=dtype, zero=zero, strides=strides, name=name)
    return PerTapConv(features, (3, 3), padding='SAME', name=name, dtype=dtype,
                      kernel_init=ddpm_nets._zero_init if zero else ddpm_nets._default_init)

  ddpm_nets._conv3x3 = conv3x3
  try:
    ch_mult, attn = ((1, 2, 2), (7,)) if size == 28 else ((1, 2), (4,))
    model = ddpm_nets.UNet(ch=32, ch_mult=ch_mult, num_res_blocks=1, attn_resolutions=attn,
                           dropout=0.0, num_groups=8)
    x = jax.random.normal(jax.random.PRNGKey(0), (128, size, size, 1))
    t = jnp.arange(128) % 1000 + 1
    params = model.init(jax.random.PRNGKey(1), x, t)['params']
    loss = lambda p: jnp.mean(jnp.square(model.apply({'params': p}, x, t) - x))
    step = jax.jit(jax.value_and_grad(loss)).lower(params).compile()
  finally:
    ddpm_nets._conv3x3 = original
  return step, params


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--repeats', type=int, default=7)
  args = parser.parse_args()
  check_gradients()
  print('gradients agree (first and second order)')
  print(f'matmul peak {benchmark.matmul_peak():.0f} GFLOP/s')
  for size in (28, 8):
    steps = {name: unet_step(name == 'per-tap', size) for name in ('xla', 'per-tap')}
    losses = {name: float(step(p)[0]) for name, (step, p) in steps.items()}
    times = {name: [] for name in steps}
    for r in range(args.repeats):
      for name in (steps if r % 2 == 0 else reversed(list(steps))):
        step, params = steps[name]
        start = time.perf_counter()
        jax.block_until_ready(step(params))
        times[name].append(time.perf_counter() - start)
    med = {name: statistics.median(v) for name, v in times.items()}
    print(f'U-Net {size}x{size}, batch 128: ' + ', '.join(
        f'{name} {1e3 * m:.0f} ms ({128 / m:.0f} img/s)' for name, m in med.items()) +
        f'; xla/per-tap time ratio {med["xla"] / med["per-tap"]:.2f}; losses {losses}')


if __name__ == '__main__':
  main()
