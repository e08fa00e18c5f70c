"""In-pod staging, without servers: configuration, path safety, output routing, keys, the multipart body,
the decision of when the run container has ended, retries, and keeping grants out of the logs."""

from __future__ import annotations

import email.parser
import email.policy
import io
import itertools
import json
import os
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dispatcher.fdl import OutputPath
from job_templates.stager.completion import (
    EXIT_CODE_FILE,
    PID_FILE,
    Expired,
    Finished,
    Killed,
    NeverStarted,
    Observation,
    ProcessId,
    Watcher,
    WatchState,
    decide,
    parse_number,
    parse_proc_stat,
    probe_process,
)
from job_templates.stager.config import (
    ConfigError,
    OutputTarget,
    UploadWhen,
    parse_outputs,
    stage_in_config,
    stage_out_config,
)
from job_templates.stager.main import main
from job_templates.stager.multipart import form_envelope
from job_templates.stager.paths import (
    OutputFile,
    UnsafePathError,
    checked_input_file,
    open_output,
    output_key,
    scan_outputs,
    targets_for,
)
from job_templates.stager.redact import REDACTED, Redactor, url_secrets
from job_templates.stager.report import Reporter
from job_templates.stager.stage_in import download_exit_code, stage_in
from job_templates.stager.stage_out import should_upload, stage_out_exit_code
from job_templates.stager.transfer import (
    PermanentTransferError,
    RetryPolicy,
    TransientTransferError,
    classify_http_error,
    with_retries,
)

URL = "https://s3.example/bucket?X-Amz-Signature=0123456789abcdef&X-Amz-Credential=AKIA%2F20260101"


def target(bucket: str = "out", folder: str = "res", prefix=(), suffix=()) -> OutputTarget:
    return OutputTarget(
        "minio.default", bucket, folder, tuple(prefix), tuple(suffix), URL, {"policy": "cG9saWN5LWRvYw=="}
    )


# -- configuration -------------------------------------------------------------------------------------------


def test_stage_out_config_parses_the_rendered_environment(tmp_path):
    outputs = [
        {
            "provider": "minio.default",
            "bucket": "b",
            "folder": "x/y/",
            "prefix": ["p"],
            "suffix": [".txt"],
            "url": URL,
            "fields": {"policy": "abc"},
        }
    ]
    config = stage_out_config(
        {
            "BUCKETRUN_OUTPUTS": json.dumps(outputs),
            "BUCKETRUN_UPLOAD_OUTPUTS": "always",
            "TMP_OUTPUT_DIR": str(tmp_path / "o"),
            "BUCKETRUN_STATE_DIR": str(tmp_path / "s"),
            "BUCKETRUN_GRANTS_EXPIRE": "2026-11-25T21:00:00Z",
        }
    )
    assert config.upload is UploadWhen.ALWAYS
    assert config.grants_expire == datetime(2026, 11, 25, 21, tzinfo=UTC)
    (output,) = config.outputs
    assert (output.bucket, output.folder, output.prefix, output.suffix) == ("b", "x/y", ("p",), (".txt",))
    assert "0123456789abcdef" not in repr(config)
    assert "abc" not in repr(output)
    assert URL not in repr(output)


SECRET = "https://s3.example/?X-Amz-Signature=SECRETSIG"


def entry(**changes) -> dict[str, object]:
    return {
        "provider": "p",
        "bucket": "b",
        "folder": "",
        "url": SECRET,
        "fields": {"policy": SECRET},
    } | changes


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"[{SECRET!r}", "BUCKETRUN_OUTPUTS is not valid JSON"),
        (json.dumps({"url": SECRET}), "BUCKETRUN_OUTPUTS must be a JSON list, got dict"),
        (json.dumps([entry(url=5)]), "BUCKETRUN_OUTPUTS[0].url must be a string"),
        (
            json.dumps([entry(), entry(suffix=SECRET)]),
            "BUCKETRUN_OUTPUTS[1].suffix must be a list of strings",
        ),
        (
            json.dumps([entry(fields={"policy": 1, "x": SECRET})]),
            "BUCKETRUN_OUTPUTS[0].fields must be an object",
        ),
        (json.dumps([entry(bucket="")]), "BUCKETRUN_OUTPUTS[0].bucket must not be empty"),
    ],
)
def test_bad_outputs_name_the_field_not_the_value(text, message):
    with pytest.raises(ConfigError) as error:
        parse_outputs(text)
    assert str(error.value).startswith(message)
    assert "SECRETSIG" not in str(error.value)


def stage_out_env(tmp_path, **extra) -> dict[str, str]:
    return {
        "BUCKETRUN_OUTPUTS": "[]",
        "BUCKETRUN_UPLOAD_OUTPUTS": "on_success",
        "TMP_OUTPUT_DIR": str(tmp_path / "o"),
        "BUCKETRUN_STATE_DIR": str(tmp_path / "s"),
        "BUCKETRUN_GRANTS_EXPIRE": "2026-11-25T21:00:00Z",
        **extra,
    }


def test_the_run_start_timeout_comes_from_the_environment_with_a_default(tmp_path):
    assert stage_out_config(stage_out_env(tmp_path)).run_start_timeout == 900
    timed = stage_out_env(tmp_path, BUCKETRUN_RUN_START_TIMEOUT="2.5")
    assert stage_out_config(timed).run_start_timeout == 2.5


@pytest.mark.parametrize("text", ["soon", "0", "-3", "inf", "nan"])
def test_a_bad_run_start_timeout_is_named(tmp_path, text):
    with pytest.raises(ConfigError, match="BUCKETRUN_RUN_START_TIMEOUT must be"):
        stage_out_config(stage_out_env(tmp_path, BUCKETRUN_RUN_START_TIMEOUT=text))


def test_missing_and_relative_variables_are_named(tmp_path):
    with pytest.raises(ConfigError, match="BUCKETRUN_INPUT_URL is not set"):
        stage_in_config({})
    env = {
        "BUCKETRUN_INPUT_URL": URL,
        "INPUT_FILE_PATH": "relative/x",
        "TMP_INPUT_DIR": str(tmp_path),
        "TMP_OUTPUT_DIR": str(tmp_path),
        "BUCKETRUN_STATE_DIR": str(tmp_path),
    }
    with pytest.raises(ConfigError, match="INPUT_FILE_PATH must be an absolute path"):
        stage_in_config(env)


def test_main_rejects_bad_arguments_and_configuration(capsys):
    assert main(["sideways"], {}) == 2
    assert "usage" in capsys.readouterr().err
    assert main(["out"], {"BUCKETRUN_UPLOAD_OUTPUTS": "sometimes"}) == 1
    assert "BUCKETRUN_UPLOAD_OUTPUTS must be one of on_success, always" in capsys.readouterr().out


# -- output routing and keys ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("relative", "expected"),
    [
        ("a.png", ["images"]),
        ("masks/a.png", ["images", "masks"]),
        ("report.txt", ["texts"]),
        ("masks/notes.txt", ["texts", "masks"]),
        ("data.bin", []),
    ],
)
def test_files_go_to_every_output_whose_filters_accept_them(relative, expected):
    outputs = [
        target("images", suffix=[".png", ".jpg"]),
        target("texts", suffix=[".txt"]),
        target("masks", prefix=["masks/"]),
    ]
    assert [o.bucket for o in targets_for(relative, outputs)] == expected


def test_routing_agrees_with_the_service_model():
    output = OutputPath.model_validate({"bucket": "bbb", "folder": "f", "prefix": ["a/"], "suffix": [".x"]})
    grant = target("bbb", "f", output.prefix, output.suffix)
    for relative in ("a/1.x", "a/1.y", "b/1.x", "a/.x", "1.x"):
        assert bool(targets_for(relative, [grant])) == output.accepts(relative)


@pytest.mark.parametrize(
    ("folder", "relative", "key"),
    [
        ("results/img", "a.png", "results/img/a.png"),
        ("", "sub/b c+ü.txt", "sub/b c+ü.txt"),
        ("x/", "y", "x/y"),
    ],
)
def test_key_is_folder_slash_relative_path(folder, relative, key):
    assert output_key(folder, relative) == key


@pytest.mark.parametrize("relative", ["../escape.txt", "a/../../b", "/abs", "a//b", "./a", "a/", ""])
def test_unclean_relative_paths_never_become_keys(relative):
    with pytest.raises(UnsafePathError, match="not a clean relative path"):
        output_key("folder", relative)


def test_overlong_keys_are_refused():
    with pytest.raises(UnsafePathError, match="1024 bytes"):
        output_key("f", "ü" * 600)


# -- path safety ---------------------------------------------------------------------------------------------


def test_scan_uploads_regular_files_only_and_never_follows_links(tmp_path):
    out = tmp_path / "out"
    secret = tmp_path / "secret.txt"
    secret.write_text("not yours")
    (out / "sub" / "deeper").mkdir(parents=True)
    (out / "a.txt").write_text("a")
    (out / "sub" / "deeper" / "b.txt").write_text("b")
    (out / "link-out").symlink_to(secret)
    (out / "link-in").symlink_to(out / "a.txt")
    (out / "dir-link").symlink_to(tmp_path, target_is_directory=True)
    os.mkfifo(out / "pipe")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(out / "sock"))
        files, skipped = scan_outputs(out)
    assert [f.relative for f in files] == ["a.txt", "sub/deeper/b.txt"]
    assert {s.relative: s.reason for s in skipped} == {
        "dir-link": "symbolic link",
        "link-in": "symbolic link",
        "link-out": "symbolic link",
        "pipe": "not a regular file (FIFO)",
        "sock": "not a regular file (socket)",
    }


def test_scan_skips_names_that_cannot_be_keys(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    # pathlib has no bytes paths; a name that is not UTF-8 needs the os-level call.
    descriptor = os.open(os.fsencode(out) + b"/bad-\xff.txt", os.O_WRONLY | os.O_CREAT, 0o644)
    os.close(descriptor)
    files, skipped = scan_outputs(out)
    assert files == []
    assert [s.reason for s in skipped] == ["name is not valid UTF-8"]


def test_unlistable_directory_is_reported_as_unreadable(tmp_path, monkeypatch):
    out = tmp_path / "out"
    (out / "private").mkdir(parents=True)
    (out / "private" / "x.txt").write_text("x")
    (out / "ok.txt").write_text("ok")
    real_scandir = os.scandir

    def scandir(path):
        # The tests run as root, which can list any directory: simulate a 0700 directory of another UID.
        if Path(path).name == "private":
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)

    monkeypatch.setattr("job_templates.stager.paths.os.scandir", scandir)
    files, skipped = scan_outputs(out)
    assert [f.relative for f in files] == ["ok.txt"]
    assert [(s.relative, s.unreadable) for s in skipped] == [("private", True)]
    assert "Permission denied" in skipped[0].reason


def test_missing_output_dir_holds_nothing(tmp_path):
    assert scan_outputs(tmp_path / "never-created") == ([], [])


def test_open_refuses_a_file_swapped_for_a_link_after_the_scan(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "secret").write_text("s")
    (out / "a.txt").write_text("a")
    (file,) = scan_outputs(out)[0]
    (out / "a.txt").unlink()
    (out / "a.txt").symlink_to(tmp_path / "secret")
    with pytest.raises(UnsafePathError, match="resolves outside"):
        open_output(file, out)
    with pytest.raises(UnsafePathError, match="not a clean relative path"):
        open_output(OutputFile("../secret", out / ".." / "secret"), out)


def test_open_refuses_a_file_swapped_for_a_fifo(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "a").write_text("a")
    (file,) = scan_outputs(out)[0]
    (out / "a").unlink()
    os.mkfifo(out / "a")
    with pytest.raises(UnsafePathError, match="no longer a regular file"):
        open_output(file, out)


def test_input_file_must_stay_inside_the_input_dir(tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    assert checked_input_file(inputs / "x y.txt", inputs) == inputs.resolve() / "x y.txt"
    with pytest.raises(UnsafePathError, match="outside TMP_INPUT_DIR"):
        checked_input_file(inputs / ".." / "escaped.txt", inputs)
    (inputs / "hop").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(UnsafePathError, match="outside TMP_INPUT_DIR"):
        checked_input_file(inputs / "hop" / "escaped.txt", inputs)
    with pytest.raises(UnsafePathError, match="does not name a file"):
        checked_input_file(inputs / "..", inputs)


# -- the multipart body --------------------------------------------------------------------------------------


def parse_form(envelope, data: bytes) -> list[tuple[str, str | None, bytes]]:
    raw = f"Content-Type: {envelope.content_type}\r\n\r\n".encode() + envelope.head + data + envelope.tail
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
    return [
        (
            part.get_param("name", header="content-disposition"),
            part.get_filename(),
            part.get_payload(decode=True),
        )
        for part in message.iter_parts()
    ]


def test_multipart_body_has_the_grant_fields_then_key_then_the_file_last():
    fields = {"policy": "cG9s", "x-amz-signature": "abc", "key": "ignored", "Content-Type": "ignored"}
    envelope = form_envelope(fields, key="res/a b+ü.txt", file_type="text/plain")
    data = b"line one\r\n--not-the-boundary\r\n\x00\xff"
    parts = parse_form(envelope, data)
    assert [(name, payload) for name, _, payload in parts] == [
        ("policy", b"cG9s"),
        ("x-amz-signature", b"abc"),
        ("key", "res/a b+ü.txt".encode()),
        ("Content-Type", b"text/plain"),
        ("file", data),
    ]
    assert parts[-1][1] == "upload"
    assert envelope.content_length(len(data)) == len(envelope.head) + len(data) + len(envelope.tail)


def test_multipart_refuses_values_that_would_break_the_body():
    with pytest.raises(ValueError, match="contains the multipart boundary"):
        form_envelope({"policy": "x\r\n--B\r\n"}, key="k", file_type="text/plain", boundary="B")
    with pytest.raises(ValueError, match="not a plain token"):
        form_envelope({'evil"; name="key': "v"}, key="k", file_type="text/plain")
    with pytest.raises(ValueError, match="not a valid header value"):
        form_envelope({}, key="k", file_type="text/plain\r\nX-Injected: 1")


# -- when has the run container ended ------------------------------------------------------------------------

ALIVE = ProcessId(42, 1000)


def seen(at: float, *, exit_code=None, pid=42, process=ALIVE, expired=False) -> Observation:
    return Observation(at=at, exit_code=exit_code, pid=pid, process=process, expired=expired)


def run_decisions(observations, grace=2.0, start_timeout=900.0):
    state, verdicts = WatchState(), []
    for observation in observations:
        state, verdict = decide(state, observation, grace=grace, start_timeout=start_timeout)
        verdicts.append(verdict)
    return verdicts


def test_exit_code_ends_the_wait():
    assert run_decisions([seen(0), seen(1), seen(2, exit_code=7, process=None)]) == [None, None, Finished(7)]


def test_vanished_process_is_killed_after_the_grace():
    verdicts = run_decisions(
        [seen(0), seen(1, process=None), seen(2.5, process=None), seen(3.1, process=None)]
    )
    assert verdicts == [None, None, None, Killed(42)]


def test_exit_code_arriving_within_the_grace_wins():
    verdicts = run_decisions([seen(0), seen(1, process=None), seen(2.9, exit_code=0, process=None)])
    assert verdicts == [None, None, Finished(0)]


def test_process_coming_back_resets_the_grace():
    # A transient failure to read /proc must not accumulate across separate blips.
    observations = [seen(0), seen(1, process=None), seen(2), seen(3.5, process=None), seen(4.0, process=None)]
    assert run_decisions(observations) == [None] * 5


def test_reused_pid_counts_as_gone():
    stranger = ProcessId(42, 999_999)
    verdicts = run_decisions([seen(0), seen(1, process=stranger), seen(3, process=stranger)])
    assert verdicts == [None, None, Killed(42)]


def test_a_run_container_that_never_starts_ends_the_wait_after_the_start_timeout():
    # The clock runs from stage-out's first look, not from zero.
    observations = [seen(t, pid=None, process=None) for t in (1000, 1100, 1599, 1600)]
    assert run_decisions(observations, start_timeout=600) == [None, None, None, NeverStarted(600)]


def test_a_pid_or_an_exit_code_within_the_start_timeout_stops_that_clock():
    started = [seen(0, pid=None, process=None), seen(5), seen(700), seen(5000)]
    assert run_decisions(started, start_timeout=600) == [None] * 4
    fast = [seen(0, pid=None, process=None), seen(599, exit_code=0, pid=None, process=None)]
    assert run_decisions(fast, start_timeout=600) == [None, Finished(0)]


def test_expiry_before_the_start_timeout_is_expiry():
    observations = [seen(0, pid=None, process=None), seen(10, pid=None, process=None, expired=True)]
    assert run_decisions(observations, start_timeout=600) == [None, Expired()]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("42 (sh) S 1 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 12345 1 2 3", ProcessId(42, 12345)),
        ("7 (a) (b c)) R 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 99 1 2", ProcessId(7, 99)),
        ("42 (sh) Z 1 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 12345 1 2 3", None),
        ("42 (sh) S 1", None),
        ("", None),
    ],
)
def test_proc_stat_parsing(text, expected):
    assert parse_proc_stat(text) == expected


@pytest.mark.parametrize(("text", "expected"), [("0\n", 0), (" 137 ", 137), ("", None), ("1x", None)])
def test_state_numbers(text, expected):
    assert parse_number(text) == expected


def test_probe_sees_this_process_and_not_a_missing_one(tmp_path):
    me = probe_process(os.getpid())
    assert me is not None
    assert me.pid == os.getpid()
    assert probe_process(os.getpid()) == me  # the start time is stable
    assert probe_process(1, proc=tmp_path) is None


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def fake_proc(root: Path, pid: int, state: str = "S", start: int = 500) -> None:
    (root / str(pid)).mkdir(parents=True, exist_ok=True)
    fields = " ".join(["1"] * 16)
    (root / str(pid) / "stat").write_text(f"{pid} (sh) {state} {fields} {start} 0\n")


def test_watcher_loop_over_a_fake_proc_and_clock(tmp_path):
    state_dir, proc = tmp_path / "state", tmp_path / "proc"
    state_dir.mkdir()
    proc.mkdir()
    clock = FakeClock()
    far = datetime(2999, 1, 1, tzinfo=UTC)
    watcher = Watcher(
        state_dir,
        expires_at=far,
        poll=0.5,
        grace=2.0,
        proc=proc,
        monotonic=clock.monotonic,
        sleep=clock.sleep,
    )
    (state_dir / PID_FILE).write_text("77\n")
    fake_proc(proc, 77, state="Z")  # a zombie has exited
    assert watcher.wait() == Killed(77)
    assert 2.0 <= clock.now <= 2.5

    (state_dir / EXIT_CODE_FILE).write_text("5\n")
    assert watcher.wait() == Finished(5)


def test_watcher_gives_up_when_the_grants_expire(tmp_path):
    clock = FakeClock()
    start = datetime(2026, 1, 1, tzinfo=UTC)
    watcher = Watcher(
        tmp_path,
        expires_at=start + timedelta(seconds=30),
        poll=1.0,
        proc=tmp_path,
        monotonic=clock.monotonic,
        sleep=clock.sleep,
        now=lambda: start + timedelta(seconds=clock.now),
    )
    assert watcher.wait() == Expired()
    assert clock.now == 30


def test_watcher_gives_up_on_a_run_container_that_never_starts(tmp_path):
    clock = FakeClock()
    watcher = Watcher(
        tmp_path,
        expires_at=datetime(2999, 1, 1, tzinfo=UTC),
        poll=1.0,
        start_timeout=45.0,
        proc=tmp_path,
        monotonic=clock.monotonic,
        sleep=clock.sleep,
    )
    assert watcher.wait() == NeverStarted(45.0)
    assert clock.now == 45


# -- what stage-out does with a verdict ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("verdict", "when", "upload"),
    [
        (Finished(0), UploadWhen.ON_SUCCESS, True),
        (Finished(1), UploadWhen.ON_SUCCESS, False),
        (Killed(1), UploadWhen.ON_SUCCESS, False),
        (Finished(1), UploadWhen.ALWAYS, True),
        (Killed(1), UploadWhen.ALWAYS, True),
        (Expired(), UploadWhen.ALWAYS, False),
        (NeverStarted(900), UploadWhen.ALWAYS, False),
        (NeverStarted(900), UploadWhen.ON_SUCCESS, False),
    ],
)
def test_when_outputs_are_uploaded(verdict, when, upload):
    assert should_upload(verdict, when) is upload


@pytest.mark.parametrize(
    ("verdict", "failures", "code"),
    [
        (Finished(0), 0, 0),
        (Finished(1), 0, 0),
        (Finished(0), 1, 2),
        (Killed(1), 0, 3),
        (Killed(1), 2, 2),
        (Expired(), 0, 3),
        (NeverStarted(900), 0, 4),
    ],
)
def test_stage_out_exit_codes(verdict, failures, code):
    assert stage_out_exit_code(verdict, failures) == code


# -- errors and retries --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "kind", "exit_code"),
    [
        (404, "NoSuchKey", PermanentTransferError, 64),
        (404, None, PermanentTransferError, 64),
        (403, "AccessDenied", PermanentTransferError, 65),
        (400, "AuthorizationQueryParametersError", PermanentTransferError, 1),
        (503, "SlowDown", TransientTransferError, 1),
        (500, None, TransientTransferError, 1),
        (429, None, TransientTransferError, 1),
        (400, "RequestTimeout", TransientTransferError, 1),
    ],
)
def test_http_errors_are_classified(status, code, kind, exit_code):
    error = classify_http_error(status, code, None)
    assert type(error) is kind
    assert download_exit_code(error) == exit_code


def test_retries_until_success_with_backoff():
    clock, calls = FakeClock(), []

    def attempt() -> str:
        calls.append(clock.now)
        if len(calls) < 4:
            raise TransientTransferError("HTTP 503", status=503)
        return "done"

    policy = RetryPolicy(window=60, base=1, cap=4)
    result = with_retries(attempt, policy, monotonic=clock.monotonic, sleep=clock.sleep, rand=lambda: 0.999)
    assert result == "done"
    gaps = [b - a for a, b in itertools.pairwise(calls)]
    assert gaps == pytest.approx([0.999, 1.998, 3.996])


def test_retries_stop_at_the_window_and_honour_retry_after():
    clock, calls = FakeClock(), []

    def attempt() -> None:
        calls.append(clock.now)
        raise TransientTransferError("HTTP 503", status=503, retry_after=4.0)

    with pytest.raises(TransientTransferError):
        with_retries(
            attempt, RetryPolicy(window=10, base=0.1, cap=1), monotonic=clock.monotonic, sleep=clock.sleep
        )
    assert calls == [0, 4, 8]


def test_permanent_errors_are_not_retried():
    calls = []

    def attempt() -> None:
        calls.append(1)
        raise PermanentTransferError("HTTP 403 AccessDenied", status=403)

    with pytest.raises(PermanentTransferError):
        with_retries(attempt, RetryPolicy(), sleep=lambda _s: pytest.fail("slept"))
    assert calls == [1]


# -- no grant in the logs ------------------------------------------------------------------------------------


def test_reporter_redacts_urls_queries_and_signatures():
    stream = io.StringIO()
    report = Reporter("stage", Redactor(url_secrets(URL)), stream)
    report(f"cannot open {URL}\nnext line; signature 0123456789abcdef")
    line = stream.getvalue()
    assert line.count("\n") == 1
    assert "0123456789abcdef" not in line
    assert "s3.example" not in line
    assert REDACTED in line


def test_under_file_stage_in_stage_in_prepares_the_directories_and_downloads_nothing(tmp_path):
    work = tmp_path / "work"
    env = {
        "BUCKETRUN_DOWNLOAD_INPUT": "false",
        "INPUT_FILE_PATH": str(work / "input" / "a.txt"),
        "TMP_INPUT_DIR": str(work / "input"),
        "TMP_OUTPUT_DIR": str(work / "output"),
        "BUCKETRUN_STATE_DIR": str(work / "state"),
    }
    config = stage_in_config(env)
    assert config.input_url is None
    lines = io.StringIO()
    assert stage_in(config, Reporter("bucketrun stage-in", stream=lines)) == 0
    assert sorted(p.name for p in work.iterdir()) == ["input", "output", "state"]
    assert list((work / "input").iterdir()) == []
    assert "nothing downloaded" in lines.getvalue()


def test_stage_in_still_needs_its_grant_unless_told_not_to_download(tmp_path):
    env = {
        "INPUT_FILE_PATH": str(tmp_path / "input" / "a.txt"),
        "TMP_INPUT_DIR": str(tmp_path / "input"),
        "TMP_OUTPUT_DIR": str(tmp_path / "output"),
        "BUCKETRUN_STATE_DIR": str(tmp_path / "state"),
    }
    for flag in ({}, {"BUCKETRUN_DOWNLOAD_INPUT": "true"}):
        with pytest.raises(ConfigError, match="BUCKETRUN_INPUT_URL is not set"):
            stage_in_config({**env, **flag})
