"""The provider-style task API (``/hf/tasks/...``): the front layer, its shapes and its model endpoints."""

from hfasgi.reformat.tasks_api.catalog_endpoints import map_model, send_models
from hfasgi.reformat.tasks_api.middleware import TasksAPI, TasksAPIConfig
from hfasgi.reformat.tasks_api.shapes import PROVIDER_TASKS

__all__ = ["PROVIDER_TASKS", "TasksAPI", "TasksAPIConfig", "map_model", "send_models"]
