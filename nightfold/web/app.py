"""The console as a Starlette application: server-rendered pages, live regions
refreshed by a small script, and three actions behind authentication and CSRF
checks. ``nightfold web`` (``nightfold/cli/webcmd.py``) serves it with uvicorn.

Every page reads the database through ``nightfold.ops.history`` (read-only
queries) and acts through ``nightfold.ops.actions`` (the CLI's operations).
Every value a template prints passes :func:`nightfold.common.urls.mask_url`
(the Jinja ``finalize`` hook), so an error text holding a URL with a password
never reaches a page.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from sqlalchemy import Connection, Engine
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from nightfold import __version__
from nightfold.common.config import Settings
from nightfold.common.db.engine import db_errors
from nightfold.common.errors import ConfigError, NightfoldError, RunConflict, ServiceUnavailable
from nightfold.common.states import RunState
from nightfold.common.urls import mask_url
from nightfold.ops import actions, history
from nightfold.ops.actions import MasterLauncher
from nightfold.web import security
from nightfold.web.timeline import layout, svg

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
STATES = [s.value for s in RunState]
FLASH_COOKIE = "nf_flash"


@dataclass
class Console:
    """What the pages need: settings, the engine, and who starts masters."""

    settings: Settings
    engine: Engine
    launcher: MasterLauncher | None
    """None: the console starts no master (a rerun is refused, a retry only reopens)."""

    @property
    def read_only(self) -> bool:
        return not self.settings.web_password

    def read(self, fn: Callable[[Connection], Any]) -> Any:
        with db_errors(self.settings.database_url), self.engine.connect() as conn:
            return fn(conn)


def _finalize(value: Any) -> Any:
    """Mask every URL password in whatever a template prints."""
    if isinstance(value, Markup):
        return value
    if isinstance(value, str):
        return mask_url(value)
    return value


def _templates() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(["html"]),
        finalize=_finalize,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["secs"] = _fmt_secs
    env.filters["num"] = lambda n: "" if n is None else f"{n:,.0f}"
    env.filters["short"] = lambda w: ":".join(str(w).split(":")[:2]) if w else ""
    env.filters["when"] = lambda t: "" if t is None else t.strftime("%Y-%m-%d %H:%M:%S")
    env.filters["mask"] = lambda s: "" if s is None else mask_url(str(s))
    return env


def _fmt_secs(value: float | None) -> str:
    if value is None:
        return ""
    s = float(value)
    if s < 60:
        return f"{s:.1f}s" if s < 10 else f"{s:.0f}s"
    m, s = divmod(round(s), 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"


def create_app(console: Console) -> Starlette:
    env = _templates()

    def page(request: Request, name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        cookie = request.cookies.get(security.CSRF_COOKIE) or security.new_csrf_cookie()
        ctx.update(
            request=request,
            version=__version__,
            read_only=console.read_only,
            database=mask_url(console.settings.database_url),
            csrf=security.csrf_token(cookie, console.settings.web_password or "-"),
            flash=_read_flash(request),
        )
        html = env.get_template(name).render(**ctx)
        response = HTMLResponse(html, status_code=status)
        if security.CSRF_COOKIE not in request.cookies:
            response.set_cookie(
                security.CSRF_COOKIE,
                cookie,
                httponly=True,
                samesite="strict",
                secure=request.url.scheme == "https",
            )
        if FLASH_COOKIE in request.cookies:
            response.delete_cookie(FLASH_COOKIE)
        response.headers.update(_SECURITY_HEADERS)
        return response

    def fragment(name: str, version: str, **ctx: Any) -> Response:
        html = env.get_template(name).render(**ctx)
        return HTMLResponse(html, headers={"X-Version": version, **_SECURITY_HEADERS})

    def unchanged(request: Request, version: str) -> bool:
        return request.query_params.get("v") == version

    # -- pages --------------------------------------------------------------------
    def grid(request: Request) -> Response:
        q = request.query_params
        days = _int(q.get("days"), 14, 1, 120)
        job = q.get("job") or None
        state = q.get("state") if q.get("state") in STATES else None
        until = _date(q.get("until"))

        def read(conn: Connection) -> tuple[Any, ...]:
            return (
                history.global_version(conn),
                history.nights(conn, last_days=days, until=until, job=job, state=state),
                history.all_jobs(conn),
            )

        ver, grid_, jobs = console.read(read)
        version = f"{ver}:{int(time.time() // 5)}"  # running cells' durations tick too
        ctx = dict(
            grid=grid_,
            jobs=jobs,
            job=job,
            state=state,
            days=days,
            states=STATES,
            query=urlencode({k: v for k, v in q.items() if k not in ("partial", "v")}),
            paging=urlencode({k: v for k, v in q.items() if k not in ("partial", "v", "until")}),
            earlier=(grid_.days[0] - dt.timedelta(days=1)).isoformat(),
            later=(grid_.days[-1] + dt.timedelta(days=days)).isoformat(),
        )
        if q.get("partial"):
            if unchanged(request, version):
                return Response(status_code=204)
            return fragment("_grid.html", version, **ctx)
        return page(request, "grid.html", live_version=version, **ctx)

    def run_page(request: Request) -> Response:
        run_id = _int(request.path_params["run_id"], 0, 0, 2**62)
        q = request.query_params
        every = q.get("events") == "all"
        stale = console.settings.master_stale_seconds

        def version_of(conn: Connection) -> tuple[int, str]:
            return history.run_version(conn, run_id)

        if q.get("partial") and unchanged(request, _live_version(console.read(version_of))):
            return Response(status_code=204)

        def read(conn: Connection) -> tuple[Any, ...]:
            view = history.run_view(conn, run_id, stale_seconds=stale)
            if view is None:
                return None, None, None
            return view, history.events(conn, run_id, every=every), history.quarantine(conn, run_id)

        view, events, quarantine = console.read(read)
        if view is None:
            return page(request, "error.html", 404, title="No such run", message=f"run {run_id}")
        terminal = view.run.state.value in ("succeeded", "failed", "cancelled")
        end = None
        if terminal and view.finished_at is not None:
            end = (view.finished_at - view.origin).total_seconds()
        lay = layout(view.attempts, view.now_s, end=end)
        version = _live_version(view.version)
        ctx = dict(
            v=view,
            events=events,
            every=every,
            quarantine=quarantine,
            timeline=svg(lay),
            lay=lay,
            terminal=terminal,
            spawns=console.launcher is not None,
        )
        if q.get("partial"):
            return fragment("_run.html", version, **ctx)
        return page(request, "run.html", live_version=version, **ctx)

    def workers_page(request: Request) -> Response:
        dead = console.settings.worker_dead_seconds

        def read(conn: Connection) -> Any:
            return history.workers(conn, dead_seconds=dead)

        ws = console.read(read)
        version = str(time.time())
        if request.query_params.get("partial"):
            return fragment("_workers.html", version, workers=ws)
        return page(request, "workers.html", live_version=version, workers=ws)

    def healthz(request: Request) -> Response:
        console.read(history.global_version)
        return PlainTextResponse("ok")

    # -- actions ------------------------------------------------------------------
    def _who(request: Request) -> str | None:
        return security.authenticated(
            request.headers.get("authorization"),
            console.settings.web_user,
            console.settings.web_password,
        )

    def refused(request: Request) -> Response | None:
        """403 on a read-only console, 401 (asking for basic auth) without the
        operator's credentials; None when the request may act."""
        if console.read_only:
            return page(
                request,
                "error.html",
                403,
                title="Read-only console",
                message="This console has no operator password (NIGHTFOLD_WEB_PASSWORD): "
                "it shows, it does not act.",
            )
        if _who(request) is None:
            response = page(
                request,
                "error.html",
                401,
                title="Sign in to act",
                message="Actions need the operator's credentials.",
            )
            response.headers["WWW-Authenticate"] = (
                f'Basic realm="{security.REALM}", charset="UTF-8"'
            )
            return response
        return None

    def confirm(request: Request) -> Response:
        action = request.path_params["action"]
        if action not in ACTIONS:
            return page(request, "error.html", 404, title="No such action", message=action)
        no = refused(request)
        if no is not None:
            return no
        q = request.query_params
        try:
            target = _target(console, action, q.get("run"), q.get("job"), q.get("day"))
        except NightfoldError as exc:
            return page(request, "error.html", 409, title="Cannot do that", message=str(exc))
        return page(
            request,
            "confirm.html",
            action=action,
            what=ACTIONS[action],
            target=target,
            spawns=console.launcher is not None,
        )

    async def act(request: Request) -> Response:
        action = request.path_params["action"]
        if action not in ACTIONS:
            return page(request, "error.html", 404, title="No such action", message=action)
        no = refused(request)
        if no is not None:
            return no
        ok, why = security.same_origin(
            request.headers.get("host"),
            request.headers.get("origin"),
            request.headers.get("sec-fetch-site"),
        )
        form = await request.form()
        token = form.get(security.CSRF_FIELD)
        if ok and not security.csrf_ok(
            request.cookies.get(security.CSRF_COOKIE),
            token if isinstance(token, str) else None,
            console.settings.web_password,
        ):
            ok, why = False, "its form token is missing or wrong"
        if not ok:
            log.warning("console: refused a forged %s request: %s", action, why)
            return page(
                request,
                "error.html",
                403,
                title="Refused: not sent by this console",
                message=f"The {action} request was refused: {why}.",
            )
        user = _who(request) or "?"

        def get(name: str) -> str | None:
            value = form.get(name)
            return value if isinstance(value, str) else None

        try:
            message, where = await run_in_threadpool(
                _perform, console, action, f"web:{user}", get("run"), get("job"), get("day")
            )
        except NightfoldError as exc:
            return page(request, "error.html", 409, title=f"{action}: refused", message=str(exc))
        response = RedirectResponse(where, status_code=303)
        response.set_cookie(
            FLASH_COOKIE,
            base64.urlsafe_b64encode(message.encode()).decode(),
            httponly=True,
            samesite="strict",
            max_age=60,
        )
        return response

    async def on_error(request: Request, exc: Exception) -> Response:
        if isinstance(exc, ServiceUnavailable):
            return page(request, "error.html", 503, title="Database unreachable", message=str(exc))
        raise exc

    routes = [
        Route("/", grid),
        Route("/runs/{run_id:int}", run_page),
        Route("/workers", workers_page),
        Route("/healthz", healthz),
        Route("/actions/{action}", confirm, methods=["GET"]),
        Route("/actions/{action}", act, methods=["POST"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    return Starlette(routes=routes, exception_handlers={ServiceUnavailable: on_error})


_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
    "script-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

ACTIONS = {
    "cancel": "Cancel the run",
    "retry": "Retry the dead chunks",
    "rerun": "Rerun the day (a new generation)",
}


@dataclass(frozen=True)
class Target:
    run: Any
    job: str
    day: dt.date


def _target(
    console: Console, action: str, run: str | None, job: str | None, day: str | None
) -> Target:
    url = console.settings.database_url
    if action == "rerun":
        d = _date(day)
        if not job or d is None:
            raise ConfigError("a rerun names a job and a day")
        latest = actions.check_rerun(console.engine, url, job, d)
        if console.launcher is None:
            raise RunConflict(
                "this console starts no masters (--no-masters): run "
                f"`nightfold master run --day {d} --job {job} --rerun`"
            )
        return Target(latest, job, d)
    if not run or not run.isdigit():
        raise ConfigError("the action names no run")
    info = actions.get_run(console.engine, url, int(run))
    if action == "retry" and info.state is not RunState.FAILED:
        raise RunConflict(f"run {info.label} is {info.state.value}: only a failed run is retried")
    if action == "cancel" and info.state.value in ("succeeded", "failed", "cancelled"):
        raise RunConflict(f"run {info.label} is {info.state.value}: nothing to cancel")
    return Target(info, info.job, info.day)


def _perform(
    console: Console, action: str, actor: str, run: str | None, job: str | None, day: str | None
) -> tuple[str, str]:
    """Do ``action``; (message for the operator, where to go next)."""
    target = _target(console, action, run, job, day)
    url = console.settings.database_url
    if action == "cancel":
        if not actions.cancel(console.engine, url, target.run.id, actor):
            raise RunConflict(f"run {target.run.label}: a cancel was already requested")
        return f"run {target.run.label}: cancel requested", f"/runs/{target.run.id}"
    if action == "retry":
        retried = actions.retry(console.engine, url, target.run.id, actor)
        said = (
            f"run {retried.run.label}: {retried.chunks} dead {retried.stage.value} chunk(s) "
            f"pending again"
        )
        if console.launcher is None:
            said += (
                f"; start its master: nightfold master run --day {target.day} --job {target.job}"
            )
        else:
            launched = console.launcher.launch(target.job, target.day, rerun=False)
            said += f"; master started (pid {launched.pid})"
        return said, f"/runs/{target.run.id}"
    assert console.launcher is not None
    before = target.run.generation if target.run is not None else 0
    launched = console.launcher.launch(target.job, target.day, rerun=True)
    deadline = time.monotonic() + 5
    new = None
    while time.monotonic() < deadline:
        latest = actions.find_latest(console.engine, url, target.job, target.day)
        if latest is not None and latest.generation > before:
            new = latest
            break
        time.sleep(0.2)
    said = f"rerun started (master pid {launched.pid})"
    if new is None:
        return f"{target.job}/{target.day}: {said}; its new generation is not recorded yet", "/"
    return f"run {new.label}: {said}", f"/runs/{new.id}"


def _live_version(version: tuple[int, str]) -> str:
    """A run page's live version: its newest event and state, and while it runs a
    5-second tick (its durations, rates and running bars grow without events)."""
    newest, state = version
    tick = "" if state in ("succeeded", "failed", "cancelled") else str(int(time.time() // 5))
    return f"{newest}:{state}:{tick}"


def _read_flash(request: Request) -> str | None:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None
    try:
        return base64.urlsafe_b64decode(raw.encode()).decode()[:2000]
    except (ValueError, UnicodeDecodeError):
        return None


def _int(value: Any, default: int, lo: int, hi: int) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError):
        return default
    return min(max(n, lo), hi)


def _date(value: str | None) -> dt.date | None:
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        return None
