"""Reading one OSCAR FDL document (already parsed YAML) into ``ServiceDefinition`` objects.

Accepted shapes:

* the oscar-cli form ``functions: {oscar: [{<cluster-id>: <service>}, ...]}``, with optional top-level
  ``storage_providers`` (shared by all its services) and ``clusters`` (ignored, with a warning);
* a bare service mapping (OSCAR API form, e.g. the AI4OS PAPI template), ``cluster_id`` inside it.

This module translates OSCAR spellings into the model's shape -- ``environment.Variables`` or
``variables``, ``input``/``output`` paths split into bucket and folder, ``bucketrun:`` options,
provider definitions for the providers a service uses -- and applies the policy for fields bucketrun
does not implement (``unsupported``). Every problem found is collected, not just the first; the model
then validates values, and its errors are translated back to FDL field names.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from dispatcher.fdl.errors import FieldValidationError, ServiceProblem, ServiceWarning, shown
from dispatcher.fdl.locations import split_location
from dispatcher.fdl.model import LOG_LEVEL_VARIABLE, ServiceDefinition
from dispatcher.fdl.names import check_provider_id
from dispatcher.fdl.safe_yaml import YamlFloat, YamlInt
from dispatcher.fdl.script import resolve_script
from dispatcher.fdl.storage import DEFAULT_PROVIDER, normalise_provider
from dispatcher.fdl.unsupported import TOP_LEVEL_UNSUPPORTED, UNSUPPORTED_FIELDS, is_inert

_PASSED_THROUGH: Final = ("name", "image", "enable_gpu", "image_pull_secrets", "log_level", "file_stage_in")
_SERVICE_FIELDS: Final = (
    *_PASSED_THROUGH,
    *("script", "cpu", "memory", "ephemeral_storage_request", "environment", "labels", "annotations"),
    "cluster_id",
    *("input", "output", "mount", "storage_providers", "bucketrun"),
)
_MOUNT_FIELDS: Final = ("storage_provider", "path", "options")
_PATH_FIELDS: Final = ("storage_provider", "path", "prefix", "suffix")
_TOP_LEVEL_FIELDS: Final = ("functions", "storage_providers", *TOP_LEVEL_UNSUPPORTED)
_PROVIDER_FIELDS: Final = {
    "minio": ("endpoint", "region", "access_key", "secret_key", "verify"),
    "s3": ("access_key", "secret_key", "region"),
    "onedata": ("oneprovider_host", "token", "space"),
    "webdav": ("hostname", "login", "password"),
    "rucio": ("host", "auth_host", "account", "rse", "refresh_token", "oidc_audience", "token_endpoint"),
}
_USABLE_PROVIDER_KINDS: Final = ("minio", "s3")
# How model field names read in the FDL, for messages.
_FDL_NAMES: Final = {
    "inputs": "input",
    "outputs": "output",
    "variables": "environment.variables",
    "secrets": "environment.secrets",
    "options": "bucketrun",
    "gpus": "bucketrun.gpus",
}
_PATH_PARTS: Final = {"provider": "storage_provider", "bucket": "path", "folder": "path"}
_INDEXED_PATH: Final = re.compile(r"(?P<kind>input|output)\[(?P<index>[0-9]+)\]")
_Positions = dict[str, list[int]]
"""FDL position of each input (``"input"``) and output (``"output"``) handed to the model, in model order."""


@dataclass
class FileResult:
    """What one FDL document yielded: services when ``problems`` is empty, warnings either way."""

    services: list[ServiceDefinition] = field(default_factory=list)
    problems: list[ServiceProblem] = field(default_factory=list)
    warnings: list[ServiceWarning] = field(default_factory=list)


@dataclass
class _Report:
    """Findings about one service (or, with ``service=None``, the file itself)."""

    result: FileResult
    source: str
    service: str | None
    fields_with_problems: set[str | None] = field(default_factory=set)

    def problem(self, field_path: str | None, message: str) -> None:
        self.fields_with_problems.add(field_path)
        self.result.problems.append(ServiceProblem(self.source, self.service, field_path, message))

    def warning(self, field_path: str | None, message: str) -> None:
        self.result.warnings.append(ServiceWarning(self.source, self.service, field_path, message))

    def unknown(self, field_path: str, key: object, known: tuple[str, ...]) -> None:
        hint = ""
        if isinstance(key, str):
            close = difflib.get_close_matches(key.lower(), known, n=1)
            if close:
                hint = f" (did you mean {close[0]!r}?)"
        self.problem(field_path, f"unknown field{hint}")


def _kind_of(value: object) -> str:
    names = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    for kind, name in names.items():
        if isinstance(value, kind):
            return name
    return "a number" if isinstance(value, int | float) else f"a {type(value).__name__}"


def _scalar_text(value: object) -> str | None:
    """The text a YAML scalar was written as, or ``None`` for collections."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, YamlInt | YamlFloat):
        return value.text
    if isinstance(value, int | float):
        return str(value)
    if value is None:
        return ""
    return None


def _string_map(raw: object, field_path: str, report: _Report, *, secret: bool = False) -> dict[object, str]:
    """A mapping of strings; unquoted scalars become their text with a warning, collections are refused."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        report.problem(field_path, f"must be a mapping, got {_kind_of(raw)}")
        return {}
    values: dict[object, str] = {}
    for key, value in raw.items():
        text = _scalar_text(value)
        place = f"{field_path}.{key}"
        if text is None:
            quote = "" if secret else f" -- quote it if {shown(value)} is meant literally"
            report.problem(place, f"value must be a string, got {_kind_of(value)}{quote}")
            continue
        if not isinstance(value, str):
            if value is None:
                note = "an empty value is read as the empty string"
            else:
                shown_text = "" if secret else f" {shown(text)}"
                note = f"{_kind_of(value)} written without quotes is read as the string{shown_text}; quote it"
            report.warning(place, note)
        values[key] = text
    return values


class _ServiceReader:
    """Translates one FDL service mapping into the keyword arguments of ``ServiceDefinition``."""

    def __init__(
        self,
        report: _Report,
        base_dir: Path | None,
        providers: dict[str, dict[str, Any]],
        clusters: frozenset[str] = frozenset(),
    ) -> None:
        self.report = report
        self.base_dir = base_dir
        self.file_providers = providers
        self.clusters = clusters
        """The cluster ids the document files services under (oscar-cli defines their MinIOs)."""
        self.data: dict[str, Any] = {}
        self.ignore: set[str] = set()
        self.events: object = None
        self.used_providers: set[str] = set()
        self.positions: _Positions = {"input": [], "output": []}
        self.name: object = None
        self.unreachable_providers: set[str] = set()

    def read(self, raw: dict[Any, Any], cluster_id: str | None) -> dict[str, Any]:
        """The model's keyword arguments for service mapping ``raw`` (filed under ``cluster_id``)."""
        self._read_bucketrun(raw.get("bucketrun"))  # first: it can accept refused fields
        for key, value in raw.items():
            if key in UNSUPPORTED_FIELDS:
                self._unsupported(key, value)
            elif key not in _SERVICE_FIELDS:
                self.report.unknown(str(key), key, _SERVICE_FIELDS)
        self.data.update({key: raw[key] for key in _PASSED_THROUGH if key in raw})
        self.name = raw.get("name")
        if "script" in raw:
            self._read_script(raw["script"])
        for key in ("cpu", "memory", "ephemeral_storage_request"):
            self._read_quantity(key, raw.get(key))
        self._read_environment(raw.get("environment"))
        self._check_log_level_variable(raw.get("log_level"))
        for key in ("labels", "annotations"):
            self.data[key] = _string_map(raw.get(key), key, self.report)
        self._read_cluster_id(raw.get("cluster_id"), cluster_id)
        self.data["inputs"] = self._triggering(self._read_paths("input", raw.get("input")))
        self.data["outputs"] = self._read_paths("output", raw.get("output"))
        self._read_mount(raw.get("mount"))
        self._attach_providers(raw.get("storage_providers"))
        if not raw.get("input"):
            self.report.warning(
                "input",
                "no input: the service can never be triggered (OSCAR would only invoke it synchronously)",
            )
        return self.data

    def _read_mount(self, raw: object) -> None:
        """OSCAR's ``mount`` (``storage_provider``, ``path``, rclone ``options``); off when empty."""
        if is_inert(raw) or (isinstance(raw, dict) and all(is_inert(value) for value in raw.values())):
            return
        if not isinstance(raw, dict):
            self.report.problem(
                "mount", f"must be a mapping with storage_provider and path, got {_kind_of(raw)}"
            )
            return
        for key in raw:
            if key not in _MOUNT_FIELDS:
                self.report.unknown(f"mount.{key}", key, _MOUNT_FIELDS)
        if not is_inert(raw.get("options")):
            self.report.warning(
                "mount.options", "ignored: rclone options; bucketrun stages the folder in, read-only"
            )
        provider = raw.get("storage_provider", DEFAULT_PROVIDER)
        if not isinstance(provider, str):
            self.report.problem("mount.storage_provider", f"required string, got {_kind_of(provider)}")
            return
        try:
            # A one-segment mount path is a bucket, as OSCAR's mount reads it (rclone mounts minio:/<path>).
            location = split_location(raw.get("path"), kind="mount", provider="mount", service=self.name)
        except ValueError as error:
            self.report.problem("mount.path", str(error))
            return
        self.data["mount"] = {"provider": provider, "bucket": location.bucket, "folder": location.folder}

    def _read_cluster_id(self, value: object, filed_under: str | None) -> None:
        if filed_under is None:
            if value is not None:
                self.data["cluster_id"] = value
            return
        if value is not None and value != filed_under:
            self.report.problem(
                "cluster_id", f"differs from the cluster id {filed_under!r} it is filed under"
            )
        self.data["cluster_id"] = filed_under

    def _unsupported(self, key: str, value: object) -> None:
        policy = UNSUPPORTED_FIELDS[key]
        if is_inert(value):
            return
        if policy.refused and key not in self.ignore:
            self.report.problem(
                key, f"{policy.reason} (accept that with bucketrun.ignore_unsupported: [{key}])"
            )
        else:
            self.report.warning(key, policy.reason)

    def _read_script(self, value: object) -> None:
        if not isinstance(value, str):
            self.report.problem(
                "script", f"must be a string (script text or file name), got {_kind_of(value)}"
            )
            return
        try:
            self.data["script"] = resolve_script(value, self.base_dir)
        except ValueError as error:
            self.report.problem("script", str(error))

    def _read_quantity(self, key: str, value: object) -> None:
        # Go's decoder reads `cpu: 1.0` into OSCAR's string field as "1.0"; so does this.
        if value is None or isinstance(value, bool) or not isinstance(value, str | int | float):
            if value is not None:
                self.report.problem(
                    key, f"must be a quantity such as '1.0' or '512Mi', got {_kind_of(value)}"
                )
            return
        self.data[key] = _scalar_text(value)

    def _read_environment(self, raw: object) -> None:
        if raw is None:
            return
        if not isinstance(raw, dict):
            self.report.problem(
                "environment", f"must be a mapping with variables/secrets, got {_kind_of(raw)}"
            )
            return
        for key in raw:
            if not isinstance(key, str) or key.lower() not in {"variables", "secrets"}:
                self.report.unknown(f"environment.{key}", key, ("variables", "secrets"))
        for name in ("variables", "secrets"):
            spellings = [key for key in raw if isinstance(key, str) and key.lower() == name]
            if len(spellings) > 1:
                self.report.problem(f"environment.{name}", f"given more than once ({', '.join(spellings)})")
            elif spellings:
                secret = name == "secrets"
                self.data[name] = _string_map(
                    raw[spellings[0]], f"environment.{name}", self.report, secret=secret
                )

    def _check_log_level_variable(self, level: object) -> None:
        # OSCAR's supervisor reads a LOG_LEVEL variable before log_level, and so does the script here.
        variable = self.data.get("variables", {}).get(LOG_LEVEL_VARIABLE)
        if variable is None or not isinstance(level, str) or not level:
            return
        if variable.upper() != level.upper():
            self.report.warning(
                f"environment.variables.{LOG_LEVEL_VARIABLE}",
                f"{shown(variable)} wins over log_level {shown(level)}, as it does for OSCAR's supervisor",
            )

    def _read_bucketrun(self, raw: object) -> None:
        if raw is None:
            return
        if not isinstance(raw, dict):
            self.report.problem("bucketrun", f"must be a mapping, got {_kind_of(raw)}")
            return
        options = dict(raw)
        if "gpus" in options:
            self.data["gpus"] = options.pop("gpus")
        ignore = options.pop("ignore_unsupported", None) or []
        refusable = sorted(key for key, policy in UNSUPPORTED_FIELDS.items() if policy.refused)
        if not isinstance(ignore, list) or not all(item in refusable for item in ignore):
            self.report.problem(
                "bucketrun.ignore_unsupported", f"must be a list of field names among {', '.join(refusable)}"
            )
        else:
            self.ignore = set(ignore)
        self.events = options.get("events")
        self.data["options"] = options

    def _read_paths(self, kind: str, raw: object) -> list[dict[str, Any]]:
        """The model's paths for the FDL's ``input``/``output`` list; their FDL positions in ``positions``."""
        if raw is None:
            return []
        if not isinstance(raw, list):
            self.report.problem(kind, f"must be a list, got {_kind_of(raw)}")
            return []
        paths: list[dict[str, Any]] = []
        for index, item in enumerate(raw):
            place = f"{kind}[{index}]"
            if not isinstance(item, dict):
                self.report.problem(place, f"must be a mapping, got {_kind_of(item)}")
                continue
            for key in item:
                if key not in _PATH_FIELDS:
                    self.report.unknown(f"{place}.{key}", key, _PATH_FIELDS)
            path: dict[str, Any] = {
                key: item[key] for key in ("prefix", "suffix") if item.get(key) is not None
            }
            provider = item.get("storage_provider")
            if not isinstance(provider, str):
                self.report.problem(f"{place}.storage_provider", f"required string, got {_kind_of(provider)}")
                continue
            path["provider"] = provider
            try:
                location = split_location(item.get("path"), kind=kind, provider=provider, service=self.name)
            except ValueError as error:
                self.report.problem(f"{place}.path", str(error))
                continue
            if location.older_reading is not None:
                self.report.warning(f"{place}.path", location.older_reading)
            path["bucket"], path["folder"] = location.bucket, location.folder
            if kind == "input" and self.events is not None:
                path["events"] = self.events
            paths.append(path)
            self.positions[kind].append(index)
        return paths

    def _triggering(self, inputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The inputs that can trigger the service: those on bucketrun's own store (see ``unsupported``).

        bucketrun hears of new objects from its own store only (its MinIO's notifications, or the poller
        listing it). An input on another MinIO or S3 can never fire: a warning when another input can,
        and it is left out (so an event of the own store's same-named bucket never runs it); an error
        when none can, since the service would never run.
        """
        unreachable: list[tuple[int, str]] = []
        kept: list[dict[str, Any]] = []
        positions: list[int] = []
        for index, path in zip(self.positions["input"], inputs, strict=True):
            try:
                reference = normalise_provider(path["provider"])
            except ValueError:
                reference = DEFAULT_PROVIDER  # not MinIO/S3: the model refuses it by name
            if reference == DEFAULT_PROVIDER:
                kept.append(path)
                positions.append(index)
            else:
                unreachable.append((index, reference))
        for index, reference in unreachable:
            same = (
                f"; write that if {reference!r} is that same MinIO" if reference.startswith("minio.") else ""
            )
            why = (
                f"storage provider {reference!r} can never trigger this service: bucketrun hears of new "
                f"objects from its own store only (storage_provider 'minio', i.e. minio.default{same})"
            )
            if kept:
                self.report.warning(f"input[{index}].storage_provider", f"{why}; this input is ignored")
            else:
                self.report.problem(f"input[{index}].storage_provider", f"{why}, and no other input can")
        self.unreachable_providers = {reference for _, reference in unreachable}
        self.positions["input"] = positions
        return kept

    def _attach_providers(self, raw: object) -> None:
        own = _read_providers(raw, self.report)
        used: set[str] = set()
        for path in (*self.data["inputs"], *self.data["outputs"]):
            try:
                used.add(normalise_provider(path["provider"]))
            except ValueError:
                continue  # the model reports the reference itself
        available = dict(self.file_providers)
        for reference, definition in own.items():
            if reference in available and available[reference] != definition:
                self.report.problem(
                    f"storage_providers.{reference}", "defined differently at file level and in the service"
                )
            available[reference] = definition
            if reference not in used and reference not in self.unreachable_providers:
                self.report.warning(
                    f"storage_providers.{reference}", "not used by any input or output; ignored"
                )
        self._undefined_cluster_storage(used - set(available))
        # minio.default stays in when defined: the model refuses redefining bucketrun's own MinIO.
        self.data["storage_providers"] = {
            reference: available[reference] for reference in sorted(used) if reference in available
        }
        self.used_providers = used | self.unreachable_providers

    def _undefined_cluster_storage(self, undefined: set[str]) -> None:
        """Name oscar-cli's part when an output uses the undefined MinIO of a cluster the FDL names."""
        for position, path in zip(self.positions["output"], self.data["outputs"], strict=True):
            try:
                reference = normalise_provider(path["provider"])
            except ValueError:
                continue
            kind, _, identifier = reference.partition(".")
            if reference in undefined and kind == "minio" and identifier in self.clusters:
                self.report.problem(
                    f"output[{position}].storage_provider",
                    f"storage provider {reference!r} is not defined under storage_providers: oscar-cli "
                    f"fills in the MinIO of each cluster an FDL names (here {identifier!r}) from its own "
                    "configuration, and bucketrun has no such configuration; define it under "
                    "storage_providers (endpoint, access_key, secret_key)",
                )


def _read_providers(raw: object, report: _Report) -> dict[str, dict[str, Any]]:
    """Provider definitions by ``kind.id`` (MinIO/S3 only; others warn and are dropped)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        report.problem("storage_providers", f"must be a mapping, got {_kind_of(raw)}")
        return {}
    definitions: dict[str, dict[str, Any]] = {}
    for kind, entries in raw.items():
        if kind not in _PROVIDER_FIELDS:
            report.unknown(f"storage_providers.{kind}", kind, tuple(_PROVIDER_FIELDS))
            continue
        if not isinstance(entries, dict):
            report.problem(
                f"storage_providers.{kind}", f"must be a mapping of provider ids, got {_kind_of(entries)}"
            )
            continue
        for identifier, settings in entries.items():
            place = f"storage_providers.{kind}.{identifier}"
            if kind not in _USABLE_PROVIDER_KINDS:
                report.warning(place, f"{kind} storage is not supported by bucketrun; definition ignored")
                continue
            definition = _read_provider(kind, identifier, settings, place, report)
            if definition is not None:
                definitions[f"{kind}.{identifier}"] = definition
    return definitions


def _read_provider(
    kind: str, identifier: object, settings: object, place: str, report: _Report
) -> dict[str, Any] | None:
    try:
        check_provider_id(str(identifier))
    except ValueError as error:
        report.problem(place, str(error))
        return None
    if not isinstance(settings, dict):
        report.problem(place, f"must be a mapping, got {_kind_of(settings)}")
        return None
    definition: dict[str, Any] = {"kind": kind, "id": str(identifier)}
    for key, value in settings.items():
        if key not in _PROVIDER_FIELDS[kind]:
            report.unknown(f"{place}.{key}", key, _PROVIDER_FIELDS[kind])
        elif value is None or value == "":
            continue  # templates leave settings blank; the model reports a required one as missing
        elif key == "verify":
            definition[key] = value
        else:
            text = _scalar_text(value)
            definition[key] = text if text is not None else value
    return definition


def _fdl_field(loc: tuple[int | str, ...]) -> str | None:
    """The FDL spelling of a pydantic error location: ``('inputs', 0, 'bucket')`` -> ``input[0].path``."""
    if not loc:
        return None
    head, *rest = loc
    parts = [_FDL_NAMES.get(str(head), str(head))]
    if head in {"inputs", "outputs"} and len(rest) >= 2:
        if rest[1] == "events":  # copied from bucketrun.events: report it there, once
            return _fdl_field(("options", *rest[1:]))
        return f"{parts[0]}[{rest[0]}].{_PATH_PARTS.get(str(rest[1]), str(rest[1]))}"
    if head == "mount" and len(rest) == 1:
        return f"mount.{_PATH_PARTS.get(str(rest[0]), str(rest[0]))}"
    for item in rest:
        if item == "[key]":
            continue
        if isinstance(item, int):
            parts[-1] += f"[{item}]"
        else:
            parts.append(str(item))
    return ".".join(parts)


def _message(error: ErrorDetails) -> str:
    context = error.get("ctx") or {}
    if error["type"] == "value_error" and "error" in context:
        return str(context["error"])
    if error["type"] == "missing":
        return "required"
    if error["type"] == "extra_forbidden":
        return "unknown field"
    # Only the input's kind, never its value: it may be a secret.
    return f"{error['msg']} (got {_kind_of(error['input'])})"


def _report_validation_error(error: ValidationError, report: _Report, positions: _Positions) -> None:
    """Record each error of a model validation as a problem on the FDL field it concerns.

    A field already reported while translating (a script file that could not be read shows up again
    as a missing script) is not reported twice, nor is one error shared by several inputs (``events``).
    ``positions`` gives the FDL position of each input and output the model holds (the model numbers
    the ones it was given; the FDL may hold more).
    """
    seen = set(report.fields_with_problems)
    findings: list[tuple[str | None, str]] = []
    for details in error.errors():
        nested = (details.get("ctx") or {}).get("error")
        if isinstance(nested, FieldValidationError):
            findings.extend(nested.errors)
        else:
            findings.append((_fdl_field(details["loc"]), _message(details)))
    for field_path, message in dict.fromkeys(findings):
        where = _renumbered(field_path, positions)
        if where not in seen or where is None:
            report.problem(where, message)


def _renumbered(field_path: str | None, positions: _Positions) -> str | None:
    """``input[1].path`` of the model as the FDL numbers it (``input[2].path`` when one was left out)."""
    if field_path is None:
        return None
    match = _INDEXED_PATH.match(field_path)
    if match is None:
        return field_path
    kind, index = match["kind"], int(match["index"])
    known = positions.get(kind, [])
    fdl_index = known[index] if index < len(known) else index
    return f"{kind}[{fdl_index}]{field_path[match.end() :]}"


def _services_of(document: dict[Any, Any], report: _Report) -> list[tuple[str | None, object]]:
    """``(cluster id, service mapping)`` pairs of the oscar-cli form, reporting what is malformed."""
    for key, value in document.items():
        if key not in _TOP_LEVEL_FIELDS:
            report.unknown(str(key), key, _TOP_LEVEL_FIELDS)
        elif key in TOP_LEVEL_UNSUPPORTED and not is_inert(value):
            report.warning(str(key), TOP_LEVEL_UNSUPPORTED[key].reason)
    functions = document["functions"]
    if not isinstance(functions, dict) or not isinstance(functions.get("oscar"), list):
        report.problem("functions", "must be a mapping with an 'oscar' list of {cluster-id: service} entries")
        return []
    for key in functions:
        if key != "oscar":
            report.problem(f"functions.{key}", "only 'oscar' functions are supported")
    for index, entry in enumerate(functions["oscar"]):
        if not isinstance(entry, dict) or not entry:
            report.problem(f"functions.oscar[{index}]", "must be a mapping {cluster-id: service}")
    return service_entries(document)


def service_entries(document: object) -> list[tuple[str | None, object]]:
    """``(cluster id, service mapping)`` of every service entry of a parsed FDL document, in file order.

    The cluster id is the key an oscar-cli entry is filed under, or a bare service's ``cluster_id``.
    Pure and tolerant: a malformed part yields nothing (``read_document`` reports it).
    """
    if not isinstance(document, dict):
        return []
    if "functions" not in document:
        cluster = document.get("cluster_id")
        return [(cluster if isinstance(cluster, str) else None, document)]
    functions = document["functions"]
    if not isinstance(functions, dict) or not isinstance(functions.get("oscar"), list):
        return []
    return [
        (str(cluster), service)
        for entry in functions["oscar"]
        if isinstance(entry, dict)
        for cluster, service in entry.items()
    ]


def entry_name(raw: object) -> object:
    """The ``name`` a service entry gives itself, as written (``None`` when it has none)."""
    return raw.get("name") if isinstance(raw, dict) else None


def _service_label(raw: object, position: int) -> str:
    name = entry_name(raw)
    return name if isinstance(name, str) and name else f"#{position}"


def read_document(
    document: object, *, source: str, base_dir: Path | None, set_aside: Collection[int] = ()
) -> FileResult:
    """Translate and validate every service of one parsed FDL document (see module docstring).

    ``set_aside`` holds positions in ``service_entries(document)`` of entries to pass over unread (the
    definitions for other clusters that ``clusters.set_aside`` chose against).
    """
    result = FileResult()
    file_report = _Report(result, source, None)
    if document is None:
        file_report.problem(None, "empty document: no service defined")
        return result
    if not isinstance(document, dict):
        file_report.problem(None, f"expected a mapping at the top level, got {_kind_of(document)}")
        return result
    if "functions" in document:
        entries = _services_of(document, file_report)
        file_providers = _read_providers(document.get("storage_providers"), file_report)
    else:
        entries = service_entries(document)
        file_providers = {}
    if not entries and not result.problems:
        file_report.problem("functions.oscar", "no service defined")
    clusters = frozenset(cluster for cluster, _ in entries if cluster is not None)
    used: set[str] = set()
    for position, (cluster_id, raw) in enumerate(entries):
        if position in set_aside:
            continue
        report = _Report(result, source, _service_label(raw, position + 1))
        if not isinstance(raw, dict):
            report.problem(None, f"a service must be a mapping, got {_kind_of(raw)}")
            continue
        before = len(result.problems)
        reader = _ServiceReader(report, base_dir, file_providers, clusters)
        data = reader.read(raw, cluster_id)
        used |= reader.used_providers
        try:
            service = ServiceDefinition.model_validate({**data, "source": source})
        except ValidationError as error:
            _report_validation_error(error, report, reader.positions)
            continue
        if len(result.problems) == before:
            result.services.append(service)
    for reference in sorted(set(file_providers) - used):
        file_report.warning(f"storage_providers.{reference}", "not used by any service; ignored")
    return result
