"""``tasklock.django_tasks``: enqueue-time uniqueness for Django's tasks (``django.tasks``; the
``django-tasks`` backport on Django 5.2): ``unique_task``, Django's ``@task()`` making a
``UniqueTask`` whose ``enqueue`` refuses duplicates (defined in
``tasklock.integrations.django_unique``; this is their public import path)."""

from .integrations.django_unique import UniqueTask, unique_task

__all__ = ["UniqueTask", "unique_task"]
