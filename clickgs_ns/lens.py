"""The lens model of nerfstudio's cameras as OpenCV applies it: a camera's K and distortion in OpenCV's terms,
id maps undistorted exactly as nerfstudio's datamanager undistorts the images, and pixels mapped from a distorted
photo to its pinhole image.

Camera geometry that both the data layer (id maps undistorted with their images) and the selection (clicks on a
distorted photo) need, so it sits below both, beside ``levels``: the data and render layers stay independent.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np
import torch

from nerfstudio.cameras.cameras import CameraType


class UnsupportedLensError(ValueError):
    """A camera's lens model that nerfstudio's undistortion (and so click-gaussian's) does not handle."""


def opencv_camera(camera_type: int, intrinsics: np.ndarray, distortion: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """A nerfstudio camera's K [3, 3] and distortion [6] (k1, k2, k3, k4, p1, p2) as nerfstudio hands them to OpenCV:
    K with pixel centres at integers, and the coefficients in OpenCV's order (fisheye: k1..k4; perspective:
    k1, k2, p1, p2, k3, k4, 0, 0)."""
    K = intrinsics.astype(np.float64).copy()
    K[0, 2] -= 0.5
    K[1, 2] -= 0.5
    if camera_type == CameraType.FISHEYE.value:
        return K, distortion[:4].astype(np.float64)
    d = distortion.astype(np.float64)
    return K, np.array([d[0], d[1], d[4], d[5], d[2], d[3], 0.0, 0.0])


def undistort_ids(ids: np.ndarray, camera_type: int, intrinsics: np.ndarray, distortion: np.ndarray) -> np.ndarray:
    """An id map [H, W] of a distorted image, undistorted as nerfstudio's FullImageDatamanager undistorts the image
    (nerfstudio 1.1.5 ``_undistort_image``: the same new camera matrix, remap and crop) but with nearest-neighbour
    sampling, so that ids stay ids; pixels that map outside the source are -1.

    Args:
        ids: [H, W] integer ids at the camera's resolution.
        camera_type: nerfstudio ``CameraType`` value (PERSPECTIVE or FISHEYE).
        intrinsics: [3, 3] the camera's K before undistortion.
        distortion: [6] nerfstudio's distortion parameters (k1, k2, k3, k4, p1, p2).
    Returns:
        [H', W'] int32, the size of the undistorted image.
    """
    import cv2

    K, params = opencv_camera(camera_type, intrinsics, distortion)
    size = (ids.shape[1], ids.shape[0])
    source = ids.astype(np.float32)  # cv2.remap has no int32; ids below 2^24 are exact
    if camera_type == CameraType.PERSPECTIVE.value:
        if distortion[3] != 0:
            raise UnsupportedLensError("nerfstudio cannot undistort images with the 4th radial parameter k4 "
                                       "(OPENCV distortion): reprocess the data with another camera model")
        new_K, (x, y, w, h) = cv2.getOptimalNewCameraMatrix(K, params, size, 0)
        maps = cv2.initUndistortRectifyMap(K, params, None, new_K, size, cv2.CV_32FC1)
        undistorted = cv2.remap(source, *maps, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=-1)
        undistorted = undistorted[y : y + h, x : x + w]
    elif camera_type == CameraType.FISHEYE.value:
        new_K = cv2.fisheye.estimateNewCameraMatrixForUndistortRectify(K, params, size, np.eye(3), balance=0)
        maps = cv2.fisheye.initUndistortRectifyMap(K, params, np.eye(3), new_K, size, cv2.CV_32FC1)
        undistorted = cv2.remap(source, *maps, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=-1)
    else:
        raise UnsupportedLensError(f"Cameras of type {CameraType(camera_type).name} with distortion are not supported "
                                   "by click-gaussian: reprocess the data as PERSPECTIVE (OPENCV) or FISHEYE.")
    return np.rint(undistorted).astype(np.int32)


def has_distortion(distortion) -> bool:
    """Whether nerfstudio distortion parameters ([..., 6] or None) are anything but zero."""
    return distortion is not None and bool(torch.any(distortion != 0))


def undistort_pixels(pixels: np.ndarray, camera_type: int, intrinsics: np.ndarray,
                     distortion: np.ndarray) -> np.ndarray:
    """Where points [M, 2] (x, y; nerfstudio's pixel coordinates, centres at +0.5) of a distorted image lie in the
    pinhole image of the same intrinsics [3, 3] (no crop): the lens model undone, as ``undistort_ids`` does."""
    import cv2

    K, params = opencv_camera(camera_type, intrinsics, distortion)
    points = (np.asarray(pixels, np.float64) - 0.5).reshape(-1, 1, 2)
    if camera_type == CameraType.FISHEYE.value:
        pinhole = cv2.fisheye.undistortPoints(points, K, params, P=K)
    else:
        pinhole = cv2.undistortPoints(points, K, params, P=K)
    return pinhole.reshape(-1, 2) + 0.5
