"""The stager never reads outside TMP_OUTPUT_DIR nor writes outside the job's work directories, whatever
the user's script leaves on the shared volume: symlinks to files or directories outside, a work directory
replaced by a symlink, names that look like path escapes.

The stager runs as `python -m job_templates.stager` would (its `main`), with real presigned grants against the
S3 test server; the unit tests of `job_templates.stager.paths` cover the path rules one by one. Every case
snapshots a directory *outside* the job (owner of a "secret" file) before and after, and asserts that
nothing there changed and nothing from it reached the bucket.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from job_templates.stager.contract import EXIT_INPUT_FORBIDDEN, EXIT_OK, EXIT_UPLOAD_FAILED
from job_templates.stager.main import main
from job_templates.stager.stage_out import MANIFEST_FILE
from tests.integration.test_stage import (
    assert_no_secrets,
    dirs,
    finish_script,
    grants,
    keys,
    out_env,
    put,
    service,
    write_outputs,
)

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

SECRET = b"root:x:0:0:not-for-the-bucket\n"


def snapshot(directory: Path) -> dict[str, tuple[int, bytes | str]]:
    """Every entry under *directory* with its mode and content (or link target): what must not change."""
    found: dict[str, tuple[int, bytes | str]] = {}
    for path in sorted(directory.rglob("*")):
        info = path.lstat()
        content: bytes | str = (
            str(path.readlink()) if path.is_symlink() else path.read_bytes() if path.is_file() else b""
        )
        found[str(path.relative_to(directory))] = (info.st_mode, content)
    found["."] = (directory.lstat().st_mode, b"")
    return found


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory beside the job's work dir holding a secret file (stands for /etc, another job...)."""
    directory = tmp_path / "outside"
    directory.mkdir(mode=0o700)
    directory.chmod(0o700)
    (directory / "passwd").write_bytes(SECRET)
    return directory


@pytest.fixture
def buckets(s3) -> tuple[str, str]:
    return s3.bucket("in"), s3.bucket("out")


def stage_in_env(s3, buckets, tmp_path: Path, name: str = "x.txt") -> tuple[dict[str, str], object]:
    inputs, outputs = buckets
    key = f"in/{name}"
    put(s3, inputs, key, b"input bytes")
    given = grants(s3.endpoint, service(inputs, [{"bucket": outputs, "folder": "out"}]), inputs, key)
    env = {**dirs(tmp_path), "BUCKETRUN_INPUT_URL": given.input_url}
    env["INPUT_FILE_PATH"] = f"{env['TMP_INPUT_DIR']}/{name}"
    return env, given


# -- stage-in: writes only inside TMP_INPUT_DIR --------------------------------------------------------------


def test_input_path_escaping_with_dotdot_is_refused(s3, buckets, tmp_path, outside, capfd):
    env, given = stage_in_env(s3, buckets, tmp_path)
    env["INPUT_FILE_PATH"] = f"{env['TMP_INPUT_DIR']}/../../outside/passwd"
    before = snapshot(outside)

    assert main(["in"], env) == EXIT_INPUT_FORBIDDEN

    assert snapshot(outside) == before
    out, err = capfd.readouterr()
    assert "refusing to download" in out
    assert "is outside TMP_INPUT_DIR" in out
    assert_no_secrets(out + err, given)


def test_input_path_through_a_symlinked_subdirectory_is_refused(s3, buckets, tmp_path, outside, capfd):
    env, _ = stage_in_env(s3, buckets, tmp_path)
    input_dir = Path(env["TMP_INPUT_DIR"])
    input_dir.mkdir(parents=True)
    (input_dir / "hop").symlink_to(outside, target_is_directory=True)
    env["INPUT_FILE_PATH"] = f"{input_dir}/hop/passwd"
    before = snapshot(outside)

    assert main(["in"], env) == EXIT_INPUT_FORBIDDEN

    assert snapshot(outside) == before
    assert "is outside TMP_INPUT_DIR" in capfd.readouterr().out


@pytest.mark.parametrize("which", ["TMP_INPUT_DIR", "TMP_OUTPUT_DIR", "BUCKETRUN_STATE_DIR"])
def test_a_work_directory_that_is_a_symlink_is_neither_chmodded_nor_written_through(  # noqa: PLR0917
    s3, buckets, tmp_path, outside, which, capfd
):
    # Bug found by this suite: stage-in's mkdir(exist_ok) + chmod 0777 followed such a link (opening the
    # outside directory to every UID) and the download then landed outside the job.
    env, _ = stage_in_env(s3, buckets, tmp_path, name="passwd")
    Path(env[which]).parent.mkdir(parents=True, exist_ok=True)
    Path(env[which]).symlink_to(outside, target_is_directory=True)
    before = snapshot(outside)

    assert main(["in"], env) == EXIT_INPUT_FORBIDDEN

    assert snapshot(outside) == before
    assert f"work directory '{env[which]}' is a symbolic link" in capfd.readouterr().out


def test_an_input_file_planted_as_a_symlink_is_replaced_not_written_through(s3, buckets, tmp_path, outside):
    env, _ = stage_in_env(s3, buckets, tmp_path, name="passwd")
    target = Path(env["INPUT_FILE_PATH"])
    target.parent.mkdir(parents=True)
    target.symlink_to(outside / "passwd")
    before = snapshot(outside)

    assert main(["in"], env) == EXIT_OK

    assert snapshot(outside) == before
    assert not target.is_symlink()
    assert target.read_bytes() == b"input bytes"


# -- stage-out: reads only inside TMP_OUTPUT_DIR, writes only the state dir ----------------------------------


def stage_out_env(s3, buckets, tmp_path: Path) -> tuple[dict[str, str], object, str]:
    inputs, outputs = buckets
    svc = service(inputs, [{"bucket": outputs, "folder": "out"}])
    given = grants(s3.endpoint, svc, inputs, "in/x.txt")
    env = out_env(tmp_path, svc, given)
    finish_script(Path(env["BUCKETRUN_STATE_DIR"]), 0)
    return env, given, outputs


def test_symlinks_in_the_output_dir_are_not_followed(s3, buckets, tmp_path, outside, capfd):
    env, given, outputs = stage_out_env(s3, buckets, tmp_path)
    output_dir = Path(env["TMP_OUTPUT_DIR"])
    write_outputs(output_dir, {"result.txt": b"mine"})
    (output_dir / "passwd").symlink_to("/etc/passwd")
    (output_dir / "stolen").symlink_to(outside / "passwd")
    (output_dir / "tree").symlink_to(outside, target_is_directory=True)
    (output_dir / "relative").symlink_to("../../outside/passwd")
    before = snapshot(outside)

    assert main(["out"], env) == EXIT_OK

    assert keys(s3, outputs) == ["out/result.txt"]
    assert snapshot(outside) == before
    out, err = capfd.readouterr()
    for name in ("passwd", "stolen", "tree", "relative"):
        assert f"skipped {name!r}: symbolic link" in out
    assert SECRET.decode() not in out
    assert_no_secrets(out + err, given)


def test_an_output_dir_replaced_by_a_symlink_uploads_nothing_and_fails(s3, buckets, tmp_path, outside, capfd):
    # Bug found by this suite: the scan and the open-time check both resolved TMP_OUTPUT_DIR itself, so
    # a script that swapped it for a link to another directory had that directory's files uploaded.
    env, _, outputs = stage_out_env(s3, buckets, tmp_path)
    output_dir = Path(env["TMP_OUTPUT_DIR"])
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    output_dir.symlink_to(outside, target_is_directory=True)
    before = snapshot(outside)

    assert main(["out"], env) == EXIT_UPLOAD_FAILED

    assert keys(s3, outputs) == []
    assert snapshot(outside) == before
    out = capfd.readouterr().out
    assert "TMP_OUTPUT_DIR is a symbolic link: not followed" in out


def test_a_state_dir_replaced_by_a_symlink_gets_no_manifest_written_through_it(
    s3, buckets, tmp_path, outside, capfd
):
    env, _, outputs = stage_out_env(s3, buckets, tmp_path)
    write_outputs(Path(env["TMP_OUTPUT_DIR"]), {"result.txt": b"mine"})
    state = Path(env["BUCKETRUN_STATE_DIR"])
    for entry in state.iterdir():  # the script ran and exited 0; then it swapped the state dir
        (outside / entry.name).write_bytes(entry.read_bytes())
        entry.unlink()
    state.rmdir()
    state.symlink_to(outside, target_is_directory=True)
    before = snapshot(outside)

    assert main(["out"], env) == EXIT_UPLOAD_FAILED

    assert snapshot(outside) == before
    assert not (outside / MANIFEST_FILE).exists()
    assert "cannot write outputs.json: BUCKETRUN_STATE_DIR" in capfd.readouterr().out
    assert keys(s3, outputs) == ["out/result.txt"]  # the upload itself was the script's own output


MINIO_REFUSES = {"..\\..\\etc\\passwd", " .."}
"""Output names the real MinIO answers 400 XMinioInvalidObjectName for (moto stores them)."""


@pytest.mark.parametrize(
    "name",
    [
        "..\\..\\etc\\passwd",  # a backslash is an ordinary character on POSIX and in S3 keys
        "...",
        "..foo",
        "a..b",
        " ..",
        "..\u2215etc\u2215passwd",  # division slash, not a path separator
        "..\uff0fetc",  # fullwidth solidus
        "-rf",
        "$(reboot)",
        "`id`",
        "line\nbreak",
    ],
)
def test_output_names_that_look_like_escapes_stay_under_the_output_folder(s3, buckets, tmp_path, name, capfd):
    env, _, outputs = stage_out_env(s3, buckets, tmp_path)
    output_dir = Path(env["TMP_OUTPUT_DIR"])
    write_outputs(output_dir, {name: b"data", f"sub/{name}/inner.txt": b"inner"})

    if s3.endpoint.backend == "minio" and name in MINIO_REFUSES:
        # MinIO itself refuses these keys (a '..' segment once it splits on '\\' and trims spaces): the
        # uploads fail, each named, and the job fails; nothing lands anywhere.
        assert main(["out"], env) == EXIT_UPLOAD_FAILED
        assert keys(s3, outputs) == []
        out = capfd.readouterr().out
        for path in (name, f"sub/{name}/inner.txt"):
            assert f"FAILED to upload {path!r} to bucket {outputs!r}: HTTP 400 XMinioInvalidObjectName" in out
        return
    assert main(["out"], env) == EXIT_OK

    found = keys(s3, outputs)
    assert found == sorted([f"out/{name}", f"out/sub/{name}/inner.txt"])
    for key in found:
        assert key.startswith("out/")
        assert ".." not in key.split("/")
    manifest = json.loads((Path(env["BUCKETRUN_STATE_DIR"]) / MANIFEST_FILE).read_text())
    assert sorted(item["key"] for item in manifest) == found
