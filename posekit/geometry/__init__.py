"""Geometry: cameras and projection, DLT triangulation, rotations and Procrustes alignment."""
from posekit.geometry.camera import (
    Camera,
    distort_normalized,
    fold_radius_squared,
    orthographic_project,
    undistort_normalized,
    weak_perspective_project,
)
from posekit.geometry.procrustes import similarity_procrustes
from posekit.geometry.rotations import (
    axis_angle_to_matrix,
    axis_angle_to_quaternion,
    euler_from_rotation_matrix,
    is_rotation_matrix,
    matrix_to_axis_angle,
    matrix_to_quaternion,
    quaternion_to_axis_angle,
    quaternion_to_matrix,
    rotation_matrix_from_euler,
)
from posekit.geometry.triangulation import triangulate_cameras, triangulate_dlt

__all__ = [
    "Camera",
    "axis_angle_to_matrix",
    "axis_angle_to_quaternion",
    "distort_normalized",
    "euler_from_rotation_matrix",
    "fold_radius_squared",
    "is_rotation_matrix",
    "matrix_to_axis_angle",
    "matrix_to_quaternion",
    "orthographic_project",
    "quaternion_to_axis_angle",
    "quaternion_to_matrix",
    "rotation_matrix_from_euler",
    "similarity_procrustes",
    "triangulate_cameras",
    "triangulate_dlt",
    "undistort_normalized",
    "weak_perspective_project",
]
