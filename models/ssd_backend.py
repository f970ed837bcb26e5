"""The one place that chooses the SSD scan backend: pure PyTorch or mamba-ssm's fused kernels.

- ``"torch"``: `models.ssd.ssd_chunked` (runs everywhere; the only backend the tests need).
- ``"mamba_ssm"``: ``mamba_ssm.ops.triton.ssd_combined.mamba_chunk_scan_combined`` (Triton,
  CUDA only). Requested explicitly but unavailable, it raises `ModelError` with the install hint.
- ``"auto"``: mamba_ssm when the tensors are on CUDA *and* the lazy import succeeds, else torch.

mamba_ssm is never imported at package import time. Its import can fail in more ways than
`ImportError` (a missing compiled extension, Triton without a driver), so any `Exception` from
the import counts as "unavailable": on a CPU-only machine mamba-ssm installs (with
`MAMBA_FORCE_BUILD`) but its import fails on the missing compiled `selective_scan_cuda`, and its
fused scan refuses CPU tensors with a TypeError.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any, Literal

import torch
from torch import Tensor

from models.ssd import ssd_chunked
from streamsim.errors import ModelError

Backend = Literal["auto", "torch", "mamba_ssm"]
BACKENDS: tuple[str, ...] = ("auto", "torch", "mamba_ssm")

INSTALL_HINT = (
    "`mamba_ssm` is required for backend='mamba_ssm'; install streamsim[mamba] on a CUDA machine: "
    "pip install --no-build-isolation -e '.[mamba]'"
)


@cache
def _mamba_scan() -> Callable[..., Any] | None:
    """mamba_ssm's fused chunked scan, or None when it cannot be imported here."""
    try:
        from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined
    except Exception:  # noqa: BLE001 - any import failure means "not available"
        return None
    return mamba_chunk_scan_combined


def require_mamba_ssm() -> None:
    """Raise `ModelError` with the install hint when mamba_ssm's fused scan cannot be imported."""
    if _mamba_scan() is None:
        raise ModelError(INSTALL_HINT)


def mamba_ssm_available() -> bool:
    """True when mamba_ssm's fused scan imports and CUDA is available."""
    return torch.cuda.is_available() and _mamba_scan() is not None


def resolve_backend(backend: str, device: torch.device) -> Literal["torch", "mamba_ssm"]:
    """The concrete backend for `backend` on `device`; raises `ModelError` when impossible."""
    if backend == "torch":
        return "torch"
    if backend == "auto":
        if device.type == "cuda" and _mamba_scan() is not None:
            return "mamba_ssm"
        return "torch"
    if backend == "mamba_ssm":
        require_mamba_ssm()
        if device.type != "cuda":
            msg = f"backend='mamba_ssm' needs CUDA tensors, got device {device}"
            raise ModelError(msg)
        return "mamba_ssm"
    msg = f"unknown SSD backend {backend!r}; expected one of {BACKENDS}"
    raise ModelError(msg)


def ssd_scan(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    *,
    chunk: int,
    backend: str = "auto",
    initial_state: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """SSD scan with the chosen backend; shapes and semantics as `models.ssd.ssd_chunked`.

    `dt` is the final step size (already softplus'd and masked); the fused kernel gets it with
    ``dt_softplus=False`` and no ``dt_bias``, B and C with a singleton group axis.
    """
    if resolve_backend(backend, x.device) == "torch":
        return ssd_chunked(x, dt, A, B, C, chunk=chunk, initial_state=initial_state)
    scan = _mamba_scan()
    assert scan is not None  # resolve_backend checked it
    y, final = scan(
        x,
        dt,
        A,
        B.unsqueeze(2),
        C.unsqueeze(2),
        chunk,
        initial_states=initial_state,
        dt_softplus=False,
        return_final_states=True,
    )
    return y, final
