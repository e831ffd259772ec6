"""Evaluation metrics as pure functions of tensors.

Images are ``(N, C, H, W)`` in [−1, 1]; features are ``(N, D)``.

* distributions (features): :func:`frechet_distance`, :func:`kid`, :func:`precision_recall`
* feature extractors: :class:`ClassifierFeatures` (bundled default), :class:`InceptionFeatures`
* per image: :func:`mse`, :func:`psnr`, :func:`ssim` and their masked forms
  (background preservation)
* edits: :func:`target_accuracy`, :func:`class_probabilities`, :func:`diversity`
* user-supplied networks: :func:`lpips_distance`, :func:`clip_score`
"""

from .classifier import (
    FashionClassifier,
    accuracy,
    load_classifier,
    save_classifier,
    train_classifier,
)
from .diversity import Distance, diversity, pixel_mse
from .features import ClassifierFeatures, InceptionFeatures, class_probabilities, target_accuracy
from .fid import frechet_distance, gaussian_fit
from .hooks import clip_pixel_values, clip_score, lpips_distance
from .image import masked_mse, masked_psnr, masked_ssim, mse, psnr, ssim, ssim_map
from .kid import KID, kid, mmd2_unbiased, polynomial_kernel
from .precision_recall import PrecisionRecall, knn_radii, manifold_coverage, precision_recall

__all__ = [
    "KID",
    "ClassifierFeatures",
    "Distance",
    "FashionClassifier",
    "InceptionFeatures",
    "PrecisionRecall",
    "accuracy",
    "class_probabilities",
    "clip_pixel_values",
    "clip_score",
    "diversity",
    "frechet_distance",
    "gaussian_fit",
    "kid",
    "knn_radii",
    "load_classifier",
    "lpips_distance",
    "manifold_coverage",
    "masked_mse",
    "masked_psnr",
    "masked_ssim",
    "mmd2_unbiased",
    "mse",
    "pixel_mse",
    "polynomial_kernel",
    "precision_recall",
    "psnr",
    "save_classifier",
    "ssim",
    "ssim_map",
    "target_accuracy",
    "train_classifier",
]
