"""``manage.py demo``: two real Celery workers race to update the same games; tasklock keeps
every game to one update at a time, and the run proves it with its own measurements."""

from __future__ import annotations

import os
import secrets
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from celery.result import AsyncResult
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.test import override_settings
from kombu.utils.url import maybe_sanitize_url

from demo_project.celery import app
from demo_project.games import acts, django_act, private_redis, tasks
from demo_project.games.report import GameReport, build_reports, table
from demo_project.games.scores import ScoreStore
from demo_project.games.timeline import Timeline, most_at_once
from demo_project.games.workers import Worker, start_workers, wait_until_ready

GAMES = (1, 2, 3)
#: what each game receives, in the order it is sent (all games at once, round by round)
BURST = (
    tasks.update_game,
    tasks.update_game,
    tasks.refresh_scoreboard,
    tasks.update_game,
    tasks.refresh_scoreboard,
    tasks.update_game,
    tasks.publish_result,
)
WORKERS = ("alpha", "bravo")
PROCESSES_PER_WORKER = 3
#: the longest the tasks may take before the demo gives up on them
TASKS_DEADLINE = 40

STORY = """\
tasklock demo: one update per game at a time
=============================================
A sports site receives score updates for a few games. Two updates of one game's
record at the same moment lose one of them, so every task below holds the lock
"game:<id>" while it works. Two separate Celery workers, alpha and bravo ({processes}
pool processes each), get a burst of tasks for the same games at once:

  update_game         on_locked="retry"  a new score must not be lost: when the game
                                         is busy, Celery runs the task again later
  refresh_scoreboard  on_locked="skip"   a refresh is pointless twice at once: when
                                         the game is busy, it is skipped
  publish_result      on_locked="wait"   the final whistle waits (up to 10 s) for the
                                         running update, then runs

Each task body records when it started and ended, so the demo measures how many
ran at once for each game. tasklock's promise: never more than 1.

"""

DJANGO_STORY = """\
tasklock demo, Django's tasks: the same locked jobs under db_worker
===================================================================
The same three jobs as in `manage.py demo` (update_game retries, refresh_scoreboard
skips, publish_result waits), written as Django tasks (@task() over the same
@task_lock(key="game:{{game_id}}", ...)), run by two django-tasks-db db_worker
processes on the demo's database. A retry is the same task enqueued again with
run_after = now + countdown. Each body records when it ran: never two at once per game.

"""

LIFETIME = """\
A lock lives as long as its holder: task_lock renews its lease (a third of the lease at a
time) while the body works, the worker's main process frees the lock of a child that died,
and every acquire hands out a fencing token that a data store can check.
"""

EXPLAIN = """\
  sent          tasks sent for that game
  ran           task bodies that ran (each one while holding the game's lock)
  skipped       refresh_scoreboard calls that found the game busy: they returned SKIPPED
  retried       times a task found the game busy and was queued again to run later
                (update_game; publish_result only if its 10 s wait ran out)
  most at once  the most bodies running at the same instant for that game, measured from
                the tasks' own start/end times (one system-wide clock); must be 1

"""


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """A SIGTERM to the demo stops it as a Ctrl-C does: workers and Redis are cleaned up."""
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _as_typed(path: str | Path) -> str:
    """``path`` as a user in the current directory would type it."""
    relative = os.path.relpath(path)
    return "python" if path == sys.executable and relative.startswith("..") else relative


def _purge(queue: str) -> int:
    """Drop the messages waiting in ``queue`` (the demo's own), and nothing else."""
    with app.connection_for_write() as connection:
        return connection.default_channel.queue_purge(queue) or 0


def _clean_up(timeline: Timeline, store: ScoreStore, results: list[AsyncResult], queue: str) -> None:
    """Delete this run's records and results; drop retries the stopped workers handed back."""
    for result in results:
        result.forget()
    _purge(queue)
    timeline.delete()
    store.delete(acts.ACT_GAMES)


class Command(BaseCommand):
    help = "Run the tasklock demo: two real Celery workers contend for per-game locks."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--django-tasks",
            action="store_true",
            help="Run the same locked jobs as Django tasks on two django-tasks-db db_worker processes.",
        )

    def handle(self, **options: Any) -> None:
        django_tasks = options.get("django_tasks", False)
        self.say((DJANGO_STORY if django_tasks else STORY).format(processes=PROCESSES_PER_WORKER))
        try:
            with _sigterm_as_interrupt(), ExitStack() as redis_stack:
                url = self.find_redis(redis_stack)
                reports = self.run_django_tasks(url) if django_tasks else self.run_demo(url)
        except KeyboardInterrupt:
            raise CommandError("interrupted: workers stopped, nothing left running", returncode=130) from None
        self.next_steps(private=url != settings.REDIS_URL)
        failed = [report for report in reports if not report.ok]
        if failed:
            problems = "; ".join(f"{report.lock_name}: {', '.join(report.problems)}" for report in failed)
            raise CommandError(f"the demo found a problem: {problems}")
        ran = sum(report.ran for report in reports)
        self.say(self.style.SUCCESS(f"\nOK: no game ever had two updates at once ({ran} task bodies ran)."))

    def say(self, text: str = "") -> None:
        self.stdout.write(text)
        self.stdout.flush()

    def find_redis(self, stack: ExitStack) -> str:
        url = settings.REDIS_URL
        shown = maybe_sanitize_url(url)
        if private_redis.answers(url):
            self.say(
                f"Redis: using {shown}. The demo writes only keys starting with "
                f'"{settings.DEMO_KEY_PREFIX}" and never flushes a database.'
            )
        else:
            self.say(f"Redis: nothing answers at {shown}; starting a private redis-server ...")
            url = stack.enter_context(private_redis.private_redis())
            self.say(f"Redis: private server at {url} (a temp dir; stopped when the demo ends).")
            # this process reads the locks there too (the lifetime acts)
            caches = {**settings.CACHES, "default": {**settings.CACHES["default"], "LOCATION": url}}
            stack.enter_context(override_settings(REDIS_URL=url, CACHES=caches))
        # this process sends the tasks and reads their results there too
        app.conf.update(broker_url=url, result_backend=url)
        return url

    def run_demo(self, url: str) -> list[GameReport]:
        call_command("migrate", verbosity=0, interactive=False)
        queue = app.conf.task_default_queue
        stale = _purge(queue)
        if stale:
            self.say(f'Queue "{queue}": removed {stale} message(s) left over by an earlier run.')
        timeline = Timeline(url, secrets.token_hex(4))
        store = ScoreStore(url, timeline.run_id)
        sent: list[tuple[str, AsyncResult]] = []
        acted: list[AsyncResult] = []
        with ExitStack() as stack:
            # on any exit, after the workers stop: only this run's keys and its own queue
            stack.callback(lambda: _clean_up(timeline, store, [r for _, r in sent] + acted, queue))
            self.say(
                f"\nStarting workers {' and '.join(WORKERS)} (celery worker --pool=prefork "
                f'--concurrency={PROCESSES_PER_WORKER}, queue "{queue}") ...'
            )
            started = time.monotonic()
            log_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="tasklock-demo-workers-"))
            workers = start_workers(
                list(WORKERS),
                queue=queue,
                redis_url=url,
                run_id=timeline.run_id,
                concurrency=PROCESSES_PER_WORKER,
                log_dir=log_dir,
            )
            stack.callback(self.stop_workers, workers)
            wait_until_ready(app, workers)
            self.say(f"Both workers answered after {time.monotonic() - started:.1f} s.\n")
            sent += self.send_burst()
            started = time.monotonic()
            self.watch(timeline, sent)
            elapsed = time.monotonic() - started
            reports = build_reports(timeline, sent)
            every_span = [span for spans in timeline.spans().values() for span in spans]
            self.say(
                f"Different games did run side by side: up to {most_at_once(every_span)} bodies at once "
                "across all games."
            )
            self.summarise(reports, elapsed)
            self.lifetime_acts(store, acted)
        return reports

    def run_django_tasks(self, url: str) -> list[GameReport]:
        call_command("migrate", verbosity=0, interactive=False)  # django-tasks-db's table too
        reports = django_act.run(self.say, url, GAMES)
        self.summarise(reports, None)
        return reports

    def lifetime_acts(self, store: ScoreStore, acted: list[AsyncResult]) -> None:
        self.say(f"\n{LIFETIME}")
        self.say("Act 2: a worker process dies while it holds a lock")
        acts.dead_worker(self.say, acted)
        self.say("\nAct 3: a lock is lost while its holder still works; fencing tokens catch the late write")
        outcome = acts.stale_write(self.say, store, acted)
        if outcome["late"]["accepted"] or not outcome["fresh"]["accepted"]:
            raise CommandError("the score store took a stale write")

    def send_burst(self) -> list[tuple[str, AsyncResult]]:
        sent = []
        for task in BURST:
            for game_id in GAMES:
                sent.append((tasks.game_lock(game_id), task.delay(game_id)))
        kinds = ", ".join(
            f"{BURST.count(task)} {task.name.rpartition('.')[2]}" for task in dict.fromkeys(BURST)
        )
        self.say(f"Sent {len(sent)} tasks at once: for each of games {', '.join(map(str, GAMES))}: {kinds}.")
        self.say("Progress, once a second (who holds each game's lock right now):")
        return sent

    def watch(self, timeline: Timeline, sent: list[tuple[str, AsyncResult]]) -> None:
        """Print a progress line once a second until every task is done or the deadline passes."""
        started = time.monotonic()
        next_line = started + 1
        while True:
            done = sum(result.ready() for _, result in sent)
            now = time.monotonic()
            over = done == len(sent) or now - started > TASKS_DEADLINE
            if over or now >= next_line:
                self.progress_line(now - started, done, len(sent), timeline)
                next_line += 1
            if over:
                return
            time.sleep(0.1)

    def progress_line(self, elapsed: float, done: int, total: int, timeline: Timeline) -> None:
        contentions = timeline.contentions()
        ran = sum(len(spans) for spans in timeline.spans().values())
        skipped = sum(count for (policy, _), count in contentions.items() if policy == "skip")
        retried = sum(count for (policy, _), count in contentions.items() if policy == "retry")
        holding = timeline.holding_now()
        now = "  ".join(f"{tasks.game_lock(g)}: {holding.get(tasks.game_lock(g), '-')}" for g in GAMES)
        self.say(
            f"  {elapsed:4.1f}s  done {done:2}/{total}  ran {ran:2}  skipped {skipped}  "
            f"retried {retried:2} | {now}"
        )

    def stop_workers(self, workers: list[Worker]) -> None:
        self.say("\nStopping the workers (SIGTERM: finish the current task, then exit) ...")
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait_or_kill()
        self.say("Workers stopped.")

    def summarise(self, reports: list[GameReport], elapsed: float | None) -> None:
        finished = sum(report.sent - report.unfinished for report in reports)
        took = "" if elapsed is None else f" in {elapsed:.1f} s"
        self.say(f"\nSummary: {finished} of {sum(r.sent for r in reports)} tasks finished{took}.\n")
        for line in table(reports):
            self.say("  " + line)
        self.say("\n" + EXPLAIN)

    def next_steps(self, private: bool) -> None:
        run = f"{_as_typed(sys.executable)} {_as_typed(Path(settings.BASE_DIR) / 'manage.py')}"
        needs_redis = " (needs a Redis at REDIS_URL)" if private else ""
        self.say(f"""\
Next:
  While the demo runs, see who holds which lock, from another terminal{needs_redis}:
    {run} locks list
  The admin's "Held locks" page (Task locks > Held locks):
    {run} createsuperuser
    {run} runserver        then open http://127.0.0.1:8000/admin/
  tasklock refusing a per-process cache, the seed's bug (every worker "holds" the lock):
    DEMO_CACHE_BACKEND=django.core.cache.backends.locmem.LocMemCache {run} check""")
