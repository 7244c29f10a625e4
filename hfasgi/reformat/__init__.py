"""Dialect translation: HF task API, TGI and OpenAI, requests and (streamed) answers, both ways."""

from hfasgi.reformat.middleware import ReformatterConfig, ResponseReformatter
from hfasgi.reformat.tasks_api import TasksAPI, TasksAPIConfig

__all__ = ["ReformatterConfig", "ResponseReformatter", "TasksAPI", "TasksAPIConfig"]
