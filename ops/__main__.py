"""`python -m ops`: the operators' and auditors' tool.

python -m ops stuck                       dossiers that are not moving, and why
python -m ops retry CODE | --query Q      retry failing activities now (audited)
python -m ops reset CODE | --query Q --to STEP
                                          run a step again (audited)
python -m ops replay --dir D | --query Q | --dossier CODE
                                          replay histories against the current code
python -m ops rebuild                     rebuild `dossiers` and `tasks` from Temporal
python -m ops audit verify [CODE]         verify audit chains against the workflow histories
                                          and the global log's signed checkpoints
python -m ops audit checkpoint            append new audit events to the global log and sign it
python -m ops audit bundle --from D --to D --output FILE
                                          a bundle an auditor checks with auditlog/verify.py
python -m ops kpi on-time | period | past-due | open-tasks | inbox
                                          on-time ratios, dossiers past due, open tasks
python -m ops keys issue | revoke | list  API keys of the integrating systems
python -m ops export history | timeline CODE
                                          a dossier's histories, its timeline with the clock
python -m ops signatures verify CODE      every e-signature of a closed dossier's documents
python -m ops archive status | run        the retention, the archive of closed histories
python -m ops plan --scenario F --staffing F [--compare F]
                                          what a staffing plan does to a surge, ward by ward
python -m ops users add | disable | roles | list
                                          accounts of the web console
python -m ops tasks claim | release | reassign | delegate | show CODE | escalated
                                          who holds a dossier's task (audited)
python -m ops sharing open | close | list UNIT
                                          surge sharing of a ward's certification
python -m ops catalogue import FILE [--dry-run] | export | from-portal SOURCE
                                          the city's procedure catalogue, versioned (audited)
"""

from __future__ import annotations

import os
import sys

import typer
from sqlalchemy.exc import DBAPIError
from temporalio.service import RPCError

from ops.archive import archive_app
from ops.audit import audit_app
from ops.catalogue import catalogue_app
from ops.export import export_app
from ops.keys import keys_app
from ops.kpi import kpi_app
from ops.rebuild import rebuild_command
from ops.replay import replay_cli
from ops.reset import reset_command
from ops.retry import retry_command
from ops.signatures import signatures_app
from ops.stuck import stuck_command
from ops.tasks import sharing_app, tasks_app
from ops.users import users_app
from planner.command import plan_command

app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False)
app.command("replay")(replay_cli)
app.command("stuck")(stuck_command)
app.command("retry")(retry_command)
app.command("reset")(reset_command)
app.command("rebuild")(rebuild_command)
app.command("plan")(plan_command)
app.add_typer(audit_app, name="audit")
app.add_typer(kpi_app, name="kpi")
app.add_typer(keys_app, name="keys")
app.add_typer(export_app, name="export")
app.add_typer(signatures_app, name="signatures")
app.add_typer(archive_app, name="archive")
app.add_typer(users_app, name="users")
app.add_typer(tasks_app, name="tasks")
app.add_typer(sharing_app, name="sharing")
app.add_typer(catalogue_app, name="catalogue")


def run() -> None:
    try:
        app()
    except (DBAPIError, OSError) as err:
        # An operator at 2 a.m. needs the one fact, not a traceback.
        print(f"ops: the engine's database does not answer: {_first_line(err)}", file=sys.stderr)
        code = 3
    except (RPCError, RuntimeError) as err:
        # The SDK says a refused connection as a RuntimeError.
        if isinstance(err, RuntimeError) and "client connect" not in str(err):
            raise
        print(f"ops: Temporal does not answer: {_first_line(err)}", file=sys.stderr)
        code = 3
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
        if done.code is not None and not isinstance(done.code, int):
            print(done.code, file=sys.stderr)
    else:
        code = 0
    sys.stdout.flush()
    sys.stderr.flush()
    # The Temporal runtime's threads can outlive the interpreter's shutdown and abort it
    # (SIGABRT) after the work is done: leave at once, with the command's own exit code.
    os._exit(code)


def _first_line(error: BaseException) -> str:
    cause = getattr(error, "orig", None) or error
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[0] if text else ''}"


if __name__ == "__main__":
    run()
