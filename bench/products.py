"""The products of a jitted function, as bare matmuls: the floor its time cannot go below on
this machine while each product runs no faster than XLA's own matmul of the same shape.

`matmul_shapes` reads every `conv_general_dilated` and `dot_general` in a function's jaxpr
(nested jaxprs included; a scan's body counted `length` times, each branch of a cond
counted) and gives each as the matmul of equal work: a convolution is the
im2col product [M, K] x [K, N] with M = output batch x output pixels, K = kernel pixels x
kernel input features, N = output features (zeros of padding and dilation counted, as in
XLA's cost analysis); a dot_general is a batched [b, M, K] x [b, K, N]. The gradients of a
convolution are convolutions in the jaxpr of a function that takes `jax.grad`, so they
are counted with their own shapes.

`floor_program` builds one jitted program that runs all those matmuls on random float32
operands (no fusion, pooling, normalisation or memory traffic between them): its time is
what the products alone cost when each runs as XLA:CPU's (or the accelerator's) matmul.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp


class Product(NamedTuple):
    """A batched matmul [batch, m, k] x [batch, k, n], `count` times."""

    batch: int
    m: int
    k: int
    n: int
    count: int = 1

    @property
    def flop(self) -> float:
        return 2.0 * self.count * self.batch * self.m * self.k * self.n


def _conv(eqn) -> Product:
    lhs, rhs = (v.aval.shape for v in eqn.invars)
    (out,) = (v.aval.shape for v in eqn.outvars)
    dims = eqn.params["dimension_numbers"]
    del lhs
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
            found.append(_conv(eqn)._replace(count=count))
        elif name == "dot_general":
            found.append(_dot(eqn)._replace(count=count))
        inner = count * eqn.params["length"] if name == "scan" else count
        for value in eqn.params.values():
            for sub in _sub_jaxprs(value):
                _walk(sub, inner, found)


def matmul_shapes(fn: Callable, *args) -> list[Product]:
    """Every product of `fn(*args)` as a matmul of equal work, in program order."""
    found: list[Product] = []
    _walk(jax.make_jaxpr(fn)(*args).jaxpr, 1, found)
    return found


def floor_program(products: list[Product]) -> Callable[[], list[jax.Array]]:
    """A zero-argument call running each product as one jitted batched matmul (float32)."""
    key = jax.random.key(0)
    operands = []
    for i, p in enumerate(products):
        a_key, b_key = jax.random.split(jax.random.fold_in(key, i))
        operands.append(
            (
                jax.random.normal(a_key, (p.count * p.batch, p.m, p.k), jnp.float32),
                jax.random.normal(b_key, (p.count * p.batch, p.k, p.n), jnp.float32),
            )
        )
    run = jax.jit(lambda ops: [jnp.matmul(a, b) for a, b in ops])
    return lambda: run(operands)
