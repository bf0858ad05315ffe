"""Config-driven training and evaluation shared by every trainable posekit method."""
from posekit.engine.config import load_config
from posekit.engine.tasks import Task, build_task, register_task
from posekit.engine.trainer import Trainer, evaluate_weights, train

__all__ = ["load_config", "Task", "build_task", "register_task", "Trainer", "train", "evaluate_weights"]
