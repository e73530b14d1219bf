"""``asyncinfer submit``: upload, optionally wait, print lines (or one JSON document), return the exit code."""

from __future__ import annotations

import argparse

from client.adapters import Adapters
from client.console import Console
from client.errors import CliError, ExitCode, UsageError
from client.render import QuietReporter, TextReporter, submit_document
from client.settings import ClientSettings
from client.submit import FileJobState, ResultCollector, SubmitRun, collect_results, plan_jobs, upload_all


def run_submit(args: argparse.Namespace, settings: ClientSettings, adapters: Adapters, console: Console) -> ExitCode:
    run = SubmitRun(session_id=args.session, model=args.model, wait=args.wait)
    run.jobs = plan_jobs(list(args.files), args.prefix)
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out {args.out}: not a directory")
    quiet = QuietReporter()
    bar = console.err if console.err_is_tty else None
    text = None if args.json else TextReporter(console.out, bar, run, adapters.clock)
    if text is not None:
        console.print(f"session {run.session_id} (model {run.model})")

    # A service error ends the run, but what was uploaded so far is still reported (with request ids).
    error: CliError | None = None
    try:
        store = adapters.input_store(settings)
        upload_all(run, store, settings.input_container, settings.max_input_bytes, text or quiet)
        if args.wait and any(j.state == FileJobState.SUBMITTED for j in run.jobs):
            collector = ResultCollector(run, adapters.output_fetcher(settings), args.out, text or quiet)
            with adapters.inbox(settings, run.session_id) as inbox:
                if text is not None:  # said once the session is ours: from now on no result can be missed
                    text.start_waiting(args.timeout)
                collect_results(collector, inbox, args.timeout, adapters.clock)
    except CliError as exc:
        error = exc
    except KeyboardInterrupt:  # still say what was uploaded, so the requests can be followed with watch
        run.interrupted = True

    code = error.exit_code if error is not None else run.exit_code()
    if text is not None:
        text.finish(args.timeout if args.wait else None)
        if error is not None and not any(j.error and j.error.message == str(error) for j in run.jobs):
            console.err.write(f"asyncinfer: error: {error}\n")
    else:
        document = submit_document(run, int(code), quiet.notes)
        document["error"] = None if error is None else str(error)
        console.print_json(document)
    return code
