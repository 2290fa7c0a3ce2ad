from django.apps import AppConfig


class GamesConfig(AppConfig):
    name = "demo_project.games"
    verbose_name = "Games (tasklock demo)"

    def ready(self) -> None:
        from tasklock.signals import lock_contended

        from .timeline import count_contention

        lock_contended.connect(count_contention, dispatch_uid="demo_project.games.count_contention")
