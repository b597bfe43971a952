"""The products of a jitted function, as bare matmuls: the floor its time cannot go below on
this machine while each product runs no faster than XLA's own matmul of the same shape.

`matmul_shapes` reads every `conv_general_dilated` and `dot_general` in a function's jaxpr
(nested jaxprs included; a scan's body counted `length` times, each branch of a cond
counted) and gives each as the matmul of equal work: a convolution is the
im2col product [M, K] x [K, N] with M = output batch x output pixels, K = kernel pixels x
kernel input features, N = output features (zeros of padding and dilation counted, which
XLA's cost analysis leaves out: 15.0 against its 13.8 GFLOP for the MNIST-100 step); a
dot_general is a batched [b, M, K] x [b, K, N]. The gradients of a convolution are
convolutions in the jaxpr of a function that takes `jax.grad`, so they are counted with
their own shapes.

`floor_seconds` times those matmuls bare, one distinct shape at a time (no fusion, pooling,
normalisation or memory traffic between them): what the products alone cost when each
runs as XLA:CPU's (or the accelerator's) matmul of its shape.
"""

from __future__ import annotations

import collections
import functools
import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from bench import common


class Product(NamedTuple):
    """A batched matmul [batch, m, k] x [batch, k, n], `occurrences` times."""

    batch: int
    m: int
    k: int
    n: int
    occurrences: int = 1

    @property
    def flop(self) -> float:
        return 2.0 * self.occurrences * self.batch * self.m * self.k * self.n


def _conv(eqn) -> Product:
    rhs = eqn.invars[1].aval.shape
    out = eqn.outvars[0].aval.shape
    dims = eqn.params["dimension_numbers"]
    out_batch, out_feature, *out_spatial = dims.out_spec
    _, rhs_in_feature, *rhs_spatial = dims.rhs_spec
    return Product(
        batch=1,
        m=out[out_batch] * math.prod(out[d] for d in out_spatial),
        k=rhs[rhs_in_feature] * math.prod(rhs[d] for d in rhs_spatial),
        n=out[out_feature],
    )


def _dot(eqn) -> Product:
    lhs, rhs = (v.aval.shape for v in eqn.invars)
    (lhs_contract, rhs_contract), (lhs_batch, rhs_batch) = eqn.params["dimension_numbers"]
    lhs_free = [d for d in range(len(lhs)) if d not in (*lhs_contract, *lhs_batch)]
    rhs_free = [d for d in range(len(rhs)) if d not in (*rhs_contract, *rhs_batch)]
    return Product(
        batch=math.prod(lhs[d] for d in lhs_batch),
        m=math.prod(lhs[d] for d in lhs_free),
        k=math.prod(lhs[d] for d in lhs_contract),
        n=math.prod(rhs[d] for d in rhs_free),
    )


def _sub_jaxprs(value):
    if isinstance(value, jax.extend.core.ClosedJaxpr):
        yield value.jaxpr
    elif isinstance(value, jax.extend.core.Jaxpr):
        yield value
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _sub_jaxprs(item)


def _walk(jaxpr, count: int, found: list[Product]) -> None:
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "conv_general_dilated":
            found.append(_conv(eqn)._replace(occurrences=count))
        elif name == "dot_general":
            found.append(_dot(eqn)._replace(occurrences=count))
        inner = count * eqn.params["length"] if name == "scan" else count
        for value in eqn.params.values():
            for sub in _sub_jaxprs(value):
                _walk(sub, inner, found)


def matmul_shapes(fn: Callable, *args) -> list[Product]:
    """Every product of `fn(*args)` as a matmul of equal work, in program order."""
    found: list[Product] = []
    _walk(jax.make_jaxpr(fn)(*args).jaxpr, 1, found)
    return found


def distinct_shapes(products: list[Product]) -> dict[tuple[int, int, int, int], int]:
    """(batch, m, k, n) -> how many times the step runs a product of that shape."""
    counts: collections.Counter = collections.Counter()
    for p in products:
        counts[(p.batch, p.m, p.k, p.n)] += p.occurrences
    return dict(counts)


_matmul = jax.jit(jnp.matmul)


def floor_seconds(products: list[Product], repeats: int = 3) -> float:
    """Seconds `products` take as bare jitted float32 matmuls, one after the other: each
    distinct shape timed on its own (median of `repeats` calls after a warm-up; operands of
    ones, passed as arguments so nothing is folded), times how often it occurs. Only one
    shape's operands exist at a time (a CIFAR-10 kernel gradient's are over 1 GB)."""
    total = 0.0
    for (batch, m, k, n), times in distinct_shapes(products).items():
        product = functools.partial(
            _matmul, jnp.ones((batch, m, k), jnp.float32), jnp.ones((batch, k, n), jnp.float32)
        )
        total += times * common.timeit(product, repeats=repeats, warmup=1)["median_s"]
        product = None  # its operands go before the next shape's are made
    return total
