"""Loading service definitions from FDL files, directories or text, and the checks across services.

``load_services`` reads files and directories (``*.yaml``/``*.yml`` directly inside, sorted by name;
hidden entries such as a ConfigMap mount's ``..data`` are skipped), validates every service, then
checks the set as a whole: one definition per name (an error naming both files; of a service defined
for several OSCAR clusters, ``dispatcher.fdl.clusters`` chooses one before validating), and services
whose outputs feed each other in a loop are reported (a warning: a chain A -> B -> A is usually a mistake,
but filters the loader cannot see through may make it finite). All problems of all files are
collected and raised together as one ``ServiceDefinitionError``; nothing is returned in part.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import yaml

from dispatcher.fdl.clusters import Entry, cluster_problems, name_problems, set_aside, set_aside_note
from dispatcher.fdl.errors import ServiceDefinitionError, ServiceProblem, ServiceWarning
from dispatcher.fdl.fdl import FileResult, entry_name, read_document, service_entries
from dispatcher.fdl.model import ServiceDefinition
from dispatcher.fdl.safe_yaml import MAX_DOCUMENT_BYTES, YamlLimitError, load_yaml

FDL_SUFFIXES: Final = (".yaml", ".yml")


@dataclass(frozen=True, slots=True)
class LoadedServices:
    """The services of a successful load, in file order, and the warnings found on the way."""

    services: tuple[ServiceDefinition, ...]
    warnings: tuple[ServiceWarning, ...] = ()
    notes: tuple[str, ...] = ()
    """Definitions for other clusters that the choice of a cluster set aside, one line each."""

    def by_name(self, name: str) -> ServiceDefinition:
        """The service called ``name``; ``KeyError`` naming it (and the known ones) otherwise."""
        for service in self.services:
            if service.name == name:
                return service
        known = ", ".join(service.name for service in self.services) or "none"
        raise KeyError(f"no service named {name!r} (loaded: {known})")

    def __iter__(self) -> Iterator[ServiceDefinition]:
        """Iterate over the services."""
        return iter(self.services)

    def __len__(self) -> int:
        """Number of services."""
        return len(self.services)


@dataclass(frozen=True, slots=True)
class _Parsed:
    """One FDL file parsed: its document, or why it has none."""

    source: str
    base_dir: Path | None
    document: object = None
    refusal: str | None = None

    def entries(self) -> list[Entry]:
        """Its service entries, for the choice among clusters."""
        if self.refusal is not None:
            return []
        return [
            Entry(self.source, cluster, entry_name(raw)) for cluster, raw in service_entries(self.document)
        ]

    def read(self, set_aside: Collection[int]) -> FileResult:
        """Its services, validated, less the entries at positions ``set_aside``."""
        if self.refusal is not None:
            return FileResult(problems=[ServiceProblem(self.source, None, None, self.refusal)])
        return read_document(self.document, source=self.source, base_dir=self.base_dir, set_aside=set_aside)


def _parse(text: str, *, source: str, base_dir: Path | None) -> _Parsed:
    try:
        document = load_yaml(text)
    except YamlLimitError as error:
        return _Parsed(source, base_dir, refusal=f"refused YAML: {error}")
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what = "; ".join(part for part in (error.context, error.problem) if part)
        return _Parsed(source, base_dir, refusal=f"invalid YAML{where}: {what}")
    except yaml.YAMLError as error:
        return _Parsed(source, base_dir, refusal=f"invalid YAML: {error}")
    return _Parsed(source, base_dir, document)


def _read_file(path: Path) -> _Parsed:
    source = str(path)
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_DOCUMENT_BYTES + 1)
    except OSError as error:
        return _Parsed(source, None, refusal=f"cannot read: {error.strerror or error}")
    if len(data) > MAX_DOCUMENT_BYTES:
        return _Parsed(source, None, refusal=f"larger than {MAX_DOCUMENT_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        return _Parsed(source, None, refusal=f"not UTF-8 text ({error.reason})")
    return _parse(text, source=source, base_dir=path.parent)


def _expand(paths: Iterable[Path], *, empty_dirs: bool = False) -> tuple[list[Path], list[ServiceProblem]]:
    """The FDL files named by ``paths`` (directories listed), each once; problems for unusable paths (an
    empty directory is one unless ``empty_dirs``)."""
    files: list[Path] = []
    problems: list[ServiceProblem] = []
    seen: set[Path] = set()
    for path in paths:
        if path.is_dir():
            found = sorted(
                entry
                for entry in path.iterdir()
                if entry.suffix in FDL_SUFFIXES and not entry.name.startswith(".") and entry.is_file()
            )
            if not found and not empty_dirs:
                problems.append(
                    ServiceProblem(str(path), None, None, "directory holds no *.yaml or *.yml file")
                )
        elif path.exists():
            found = [path]
        else:
            problems.append(ServiceProblem(str(path), None, None, "no such file or directory"))
            found = []
        for file in found:
            identity = file.resolve()
            if identity not in seen:
                seen.add(identity)
                files.append(file)
    return files, problems


def _loops(services: list[ServiceDefinition]) -> list[ServiceWarning]:
    """One warning per group of two or more services whose outputs trigger each other in a cycle."""
    feeds = {
        service.name: {
            other.name
            for other in services
            if other.name != service.name
            and any(output.may_trigger(target) for output in service.outputs for target in other.inputs)
        }
        for service in services
    }

    def reachable(start: str) -> set[str]:
        seen: set[str] = set()
        pending = [start]
        while pending:
            for following in feeds[pending.pop()]:
                if following not in seen:
                    seen.add(following)
                    pending.append(following)
        return seen

    reach = {name: reachable(name) for name in feeds}
    warnings: list[ServiceWarning] = []
    reported: set[str] = set()
    for service in services:
        if service.name in reported or service.name not in reach[service.name]:
            continue
        cycle = [
            other.name
            for other in services
            if other.name in reach[service.name] and service.name in reach[other.name]
        ]
        reported.update(cycle)
        warnings.append(
            ServiceWarning(
                service.source,
                service.name,
                "output",
                f"services {', '.join(cycle)} trigger each other in a loop; make sure filters end it",
            )
        )
    return warnings


def _finish(parsed: list[_Parsed], problems: list[ServiceProblem], cluster: str | None) -> LoadedServices:
    entries = [file.entries() for file in parsed]
    flat = [entry for file in entries for entry in file]
    left_out = set_aside(flat, cluster)
    results: list[FileResult] = []
    notes: list[str] = []
    offset = 0
    for file, file_entries in zip(parsed, entries, strict=True):
        mine = {position - offset for position in left_out if offset <= position < offset + len(file_entries)}
        results.append(file.read(mine))
        notes.extend(set_aside_note(file_entries[position], cluster) for position in sorted(mine) if cluster)
        offset += len(file_entries)
    problems = [*problems, *(problem for result in results for problem in result.problems)]
    services = [service for result in results for service in result.services]
    problems.extend(cluster_problems(flat, cluster))
    problems.extend(name_problems(services))
    if problems:
        raise ServiceDefinitionError(problems)
    warnings = [warning for result in results for warning in result.warnings]
    warnings.extend(_loops(services))
    return LoadedServices(tuple(services), tuple(warnings), tuple(notes))


def load_services(
    paths: Iterable[Path], *, cluster: str | None = None, empty_dirs: bool = False
) -> LoadedServices:
    """Load every service defined in ``paths`` (FDL files, or directories of them).

    A directory without FDL files is a problem (a path mistyped) unless ``empty_dirs``: the running
    processes allow it, for a directory another program fills (``bucketrun api``'s services directory).

    ``cluster`` chooses among the definitions of a service filed under several OSCAR cluster ids
    (``dispatcher.fdl.clusters``). Raises ``ServiceDefinitionError`` listing every problem of every file
    when anything is refused.
    """
    files, problems = _expand(paths, empty_dirs=empty_dirs)
    return _finish([_read_file(file) for file in files], problems, cluster)


def load_services_text(
    text: str, *, source: str, base_dir: Path | None, cluster: str | None = None
) -> LoadedServices:
    """Load the services of one FDL document given as text; ``source`` names it in messages.

    Pure apart from reading script files named in the FDL, which resolve against ``base_dir``
    (with ``None``, a script given as a file name is an error). ``cluster`` as for ``load_services``.
    Raises ``ServiceDefinitionError``.
    """
    return _finish([_parse(text, source=source, base_dir=base_dir)], [], cluster)
