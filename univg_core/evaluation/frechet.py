"""A Fréchet distance between sets of videos (the role FVD plays in the paper), on the
features of a small randomly initialised 3D convolutional network with fixed weights.

Why this network: FVD's I3D was trained on real-world footage and would need a download;
the Mini's world is flat shapes on flat colour. A random 3D conv net with ReLUs still maps
colour, shape, position and motion to distinct, stable features (random features are a
known, if weaker, stand-in for learnt ones), needs nothing from outside, and draws its
weights from numpy's PCG64, whose stream is guaranteed across versions, so the number is
the same on any machine. Videos are resized to 64x64 first, so 64x64 and 128x128 sets are
measured by the same network; `highpass_features` reads instead the detail above 64 px of 128x128
frames, at 128 px. The distance of small sets is biased upwards: compare
numbers measured on the same number of videos, not against the paper's FVD."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..mini.texture import block_detail

FEATURE_SEED = 2024
CHANNELS = (3, 16, 32, 64)
INPUT_SIZE = 64


def _weights(seed: int = FEATURE_SEED) -> list[tuple[torch.Tensor, torch.Tensor]]:
    rng = np.random.Generator(np.random.PCG64(seed))
    layers = []
    for c_in, c_out in zip(CHANNELS[:-1], CHANNELS[1:]):
        fan_in = c_in * 27
        weight = rng.standard_normal((c_out, c_in, 3, 3, 3)) * np.sqrt(2.0 / fan_in)  # He initialisation
        bias = rng.uniform(-0.1, 0.1, c_out)
        layers.append((torch.from_numpy(weight).float(), torch.from_numpy(bias).float()))
    return layers


_LAYERS = _weights()


@torch.no_grad()
def _net_features(x: torch.Tensor) -> np.ndarray:
    """[1, 3, T, H, W] -> per channel of the last layer, its activations' mean and standard deviation."""
    for weight, bias in _LAYERS:
        x = F.relu(F.conv3d(x, weight, bias, stride=(1, 2, 2), padding=1))
    x = x[0].flatten(1)
    return torch.cat([x.mean(dim=1), x.std(dim=1)]).double().numpy()


def _frames(video) -> torch.Tensor:
    """uint8 [T, H, W, 3] (or floats in [0, 1]) -> float [T, 3, H, W] in [0, 1]."""
    array = np.ascontiguousarray(np.asarray(video))
    frames = torch.from_numpy(array).float()
    if array.dtype == np.uint8:
        frames = frames.div(255)
    return frames.permute(0, 3, 1, 2)


def video_features(video) -> np.ndarray:
    """uint8 frames [T, H, W, 3] -> a feature vector: per channel, the mean and the standard
    deviation of the last layer's activations (2 x 64 numbers)."""
    frames = _frames(video)
    if frames.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
        frames = F.interpolate(frames, size=(INPUT_SIZE, INPUT_SIZE), mode="area")
    return _net_features((frames * 2 - 1).permute(1, 0, 2, 3).unsqueeze(0))


def highpass_features(video) -> np.ndarray:
    """Features of what a 2x area downsample removes from the frames (each pixel minus its aligned
    2x2 block's mean), at the frames' own size: the detail a 2x super-resolution adds. Scaled by 2,
    as the frames' [0, 1] are mapped to [-1, 1] for video_features."""
    detail = torch.from_numpy(block_detail(_frames(video).permute(0, 2, 3, 1).numpy()))
    return _net_features((detail * 2).permute(3, 0, 1, 2).unsqueeze(0))


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2) of two sets of
    feature rows; 0 for identical sets."""
    features_a, features_b = np.atleast_2d(features_a), np.atleast_2d(features_b)
    if features_a.shape[1] != features_b.shape[1] or min(len(features_a), len(features_b)) < 2:
        raise ValueError(f"need two sets of at least 2 feature rows of one width, got {features_a.shape} and "
                         f"{features_b.shape}")
    mu_a, mu_b = features_a.mean(axis=0), features_b.mean(axis=0)
    cov_a, cov_b = np.cov(features_a, rowvar=False), np.cov(features_b, rowvar=False)
    root_a = _sqrt_psd(cov_a)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ cov_b @ root_a), 0, None)).sum()
    distance = float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * cross)
    return max(distance, 0.0)


def video_frechet_distance(videos_a, videos_b) -> float:
    return frechet_distance(np.stack([video_features(v) for v in videos_a]),
                            np.stack([video_features(v) for v in videos_b]))
