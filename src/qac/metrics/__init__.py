"""Evaluation metrics (docs/design.md §5): FID core and detectors, proxies, toy metrics, curvature, L_CFM."""

from qac.metrics.cfm import cfm_loss_curve, gaussian_cfm_loss, velocity_cfm_loss_curve, velocity_from_denoiser
from qac.metrics.detectors import Detector, TorchScriptDetector, find_detector, load_detector, open_detector
from qac.metrics.fid import compute_stats, fid_from_generator, fid_from_stats, reference_meta
from qac.metrics.frechet import FIDResult, KIDResult, frechet_distance, kid
from qac.metrics.proxies import (
    PixelDetector,
    ProxyResult,
    RandConvDetector,
    proxy_pixel_fd,
    proxy_randconv_fd,
    proxy_swd,
)
from qac.metrics.registry import METRICS, MetricSpec, get_metric, proxy_detector
from qac.metrics.stats import FeatureStats, Reference, load_reference, save_reference
from qac.metrics.toy import data_floor, energy_distance, mmd_rbf, toy_report, w2_exact
from qac.metrics.trajectory import curvature, curvature_sigma, sigma_to_rf

__all__ = [
    "METRICS", "Detector", "FIDResult", "FeatureStats", "KIDResult", "MetricSpec", "PixelDetector",
    "ProxyResult", "RandConvDetector", "Reference", "TorchScriptDetector", "cfm_loss_curve", "compute_stats",
    "curvature", "curvature_sigma", "data_floor", "energy_distance", "fid_from_generator", "fid_from_stats",
    "find_detector", "frechet_distance", "gaussian_cfm_loss", "get_metric", "kid", "load_detector",
    "load_reference", "mmd_rbf", "open_detector", "proxy_detector", "proxy_pixel_fd", "proxy_randconv_fd",
    "proxy_swd", "reference_meta", "save_reference", "sigma_to_rf", "toy_report", "velocity_cfm_loss_curve",
    "velocity_from_denoiser", "w2_exact",
]
