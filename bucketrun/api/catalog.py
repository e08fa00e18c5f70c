"""The services the API applied: each one's definition, kept as OSCAR JSON, and the work on them.

Create, update and delete do what ``bucketrun services validate``, ``apply`` and ``delete`` do, by
calling the same code (``bucketrun.admin``) on a one-service FDL document written to a temporary
directory. The definition is then kept as ``services/<name>.json`` in a bucket of the API's own
(``BUCKETRUN_API__DEFINITIONS_BUCKET``). That bucket must notify nothing (checked before each write, so
storing a definition never triggers a service) and is not the records bucket (whose retention would
expire definitions). What is kept never holds a credential: ``clusters`` (oscar-cli puts the API's own
password there) is dropped, and secret values (``environment.secrets``, storage providers' keys) are
blanked.

Invariant: one change at a time (``_lock``). ``services apply`` rewrites a bucket's whole notification
configuration from what it read, so two concurrent applies on one bucket would lose an entry.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from bucketrun.admin.commands import EXIT_BAD_FDL, EXIT_OK, apply_services, delete_services
from bucketrun.admin.plan import PlanError, check_names
from bucketrun.admin.tokens import ServiceTokens
from bucketrun.admin.validation import validate_services
from bucketrun.api.oscar_types import Service
from bucketrun.api.services_source import ServicesSource, file_name
from dispatcher.adapters.s3.storage import NotificationsRefusedError, Storage
from dispatcher.domain.errors import BucketrunError, PermanentError
from dispatcher.runtime.settings import Settings

DEFINITIONS_FOLDER: Final = "services/"
"""Where each applied service's definition is kept in the definitions bucket."""
_SECRET_FIELDS: Final = frozenset({"secret_key", "access_key", "password", "token", "secret"})


class DefinitionsBucketError(ValueError):
    """The definitions bucket cannot be used (it is the records bucket)."""


class InvalidServiceError(ValueError):
    """The definition was refused; the message is what ``services validate`` prints for it."""


class ServiceExistsError(Exception):
    """A create named a service the API already has (OSCAR answers 409)."""


class UnknownServiceError(LookupError):
    """No service of that name was applied through the API."""


class ApplyFailedError(RuntimeError):
    """The store or the cluster failed half-way; the message says what was done before."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an apply or delete printed, line by line, as ``services apply`` prints it."""

    lines: tuple[str, ...]


def fdl_document(service: Service) -> dict[str, Any]:
    """The one-service FDL document ``oscar-cli`` would read ``service`` from.

    ``clusters`` is dropped (bucketrun runs no other OSCAR cluster; oscar-cli fills it with credentials),
    ``storage_providers`` moves up to the document, where an FDL holds it. A field sent as an empty
    string is left out, as a field not sent is: OSCAR's Go types cannot tell the two apart and give both
    its default (oscar-python posts the user's dict as it is, often without ``cpu`` or ``memory``).
    """
    dumped = service.model_dump(
        mode="json", exclude={"clusters", "storage_providers", "token"}, exclude_none=True
    )
    body = {key: value for key, value in dumped.items() if value != ""}
    document: dict[str, Any] = {"functions": {"oscar": [{service.cluster_id or "oscar": body}]}}
    if service.storage_providers:
        document["storage_providers"] = service.storage_providers
    return document


def kept_definition(service: Service) -> dict[str, Any]:
    """``service`` as stored and shown by ``GET``: no ``clusters``, secret values blanked."""
    kept = service.model_dump(mode="json", exclude={"clusters", "token"}, exclude_none=True)
    environment = kept.get("environment") or {}
    if environment.get("secrets"):
        environment["secrets"] = dict.fromkeys(environment["secrets"], "")
    for providers in (kept.get("storage_providers") or {}).values():
        for provider in providers.values():
            provider.update({key: "" for key in provider if key in _SECRET_FIELDS})
    return kept


async def notification_ids(storage: Storage, bucket: str) -> str:
    """The ids (else ARNs) of *bucket*'s notification entries, comma-separated: empty when it notifies
    nobody, or the store has no notifications (nothing can then be triggered by a write there)."""
    try:
        rules = await storage.bucket_notification(bucket)
    except NotificationsRefusedError:
        return ""
    return ", ".join(rule.rule_id or rule.arn for rule in rules)


def _tidy(text: str, folder: Path) -> str:
    """The message as ``services validate`` prints it for the file ``<name>.yaml`` in the current folder."""
    return text.replace(f"{folder}/", "")


def _plain_file_name(name: str) -> bool:
    """Whether ``name`` names a file in the folder it is joined to, and nothing else."""
    return "\x00" not in name and Path(name).name == name and name not in {".", ".."}


@contextmanager
def fdl_file(service: Service) -> Iterator[Path]:
    """``service`` as the FDL file ``<name>.yaml`` (JSON is YAML) in a temporary folder, removed after."""
    with tempfile.TemporaryDirectory(prefix="bucketrun-api-") as directory:
        # The name is the caller's and not checked yet: one that is not a plain file name ('../x', 'a/b',
        # a NUL) must not choose where the file goes; the check then refuses it in the file 'service.yaml'.
        name = f"{service.name}.yaml"
        path = Path(directory, name if _plain_file_name(name) else "service.yaml")
        path.write_text(json.dumps(fdl_document(service)), encoding="utf-8")
        yield path


def check_service(path: Path, *, cluster: str | None) -> None:
    """Raise ``InvalidServiceError`` with what ``bucketrun services validate <name>.yaml`` prints when
    it refuses the FDL file ``path``."""
    text, code = validate_services([path], cluster=cluster)
    if code != EXIT_OK:
        raise InvalidServiceError(_tidy(text, path.parent))


class ServiceCatalog:
    """Applies, lists, reads and deletes the API's services against the configured store and cluster."""

    def __init__(
        self,
        settings: Settings,
        definitions_bucket: str,
        *,
        on_change: Callable[[list[dict[str, Any]]], Awaitable[None]] | None = None,
        source: ServicesSource | None = None,
    ) -> None:
        """``on_change`` is awaited with every kept definition after each create, update and delete,
        under the lock (the API users' store policy follows the services with it). ``source`` is where
        each applied service's FDL goes for the dispatcher to run it (``bucketrun.api.services_source``)."""
        if definitions_bucket == settings.storage.records_bucket:
            raise DefinitionsBucketError(
                f"the API's definitions bucket {definitions_bucket!r} is the records bucket, whose "
                "retention would expire them: set BUCKETRUN_API__DEFINITIONS_BUCKET to a bucket of its own"
            )
        self._settings = settings
        self._storage = Storage(settings.storage)
        self._bucket = definitions_bucket
        self._folder = DEFINITIONS_FOLDER
        self._lock = asyncio.Lock()
        self._tokens = ServiceTokens(settings.cluster)
        self._on_change = on_change
        self._source = source

    def _key(self, name: str) -> str:
        return f"{self._folder}{name}.json"

    async def get(self, name: str) -> dict[str, Any]:
        """The kept definition of ``name``; ``UnknownServiceError`` when the API has none."""
        try:
            (checked,) = check_names([name])
        except PlanError:
            raise UnknownServiceError(name) from None
        try:
            body = await self._storage.get_object(self._bucket, self._key(checked))
        except PermanentError as error:  # no such key, or no definitions bucket yet
            if error.reason == "storage-not-found":
                raise UnknownServiceError(name) from None
            raise
        loaded: dict[str, Any] = json.loads(body)
        loaded["token"] = (await self._tokens.read([checked]))[checked]
        return loaded

    async def list(self) -> list[dict[str, Any]]:
        """Every kept definition, by name."""
        if not await self._storage.bucket_exists(self._bucket):
            return []
        found = await self._storage.list(self._bucket, self._folder, limit=None)
        kept = [json.loads(await self._storage.get_object(self._bucket, item.key)) for item in found]
        tokens = await self._tokens.read(definition["name"] for definition in kept)
        return [{**definition, "token": tokens[definition["name"]]} for definition in kept]

    async def create(self, service: Service) -> Outcome:
        """Validate and apply a new service; ``ServiceExistsError`` when the API has it already."""
        async with self._lock:
            if await self._exists(service.name):
                raise ServiceExistsError(service.name)
            outcome = await self._apply(service, new=True)
            await self._token(service.name, self._tokens.issue)
            await self._changed("applied")
            return outcome

    async def update(self, service: Service) -> Outcome:
        """Validate and apply a service the API has; ``UnknownServiceError`` otherwise."""
        async with self._lock:
            if not await self._exists(service.name):
                raise UnknownServiceError(service.name)
            outcome = await self._apply(service, new=False)
            await self._token(service.name, self._tokens.keep)
            await self._changed("applied")
            return outcome

    async def delete(self, name: str) -> Outcome:
        """Do what ``services delete NAME`` does, then forget the definition."""
        async with self._lock:
            await self.get(name)
            lines: list[str] = []
            message, code = await delete_services(self._settings, [name], [], emit=lines.append)
            if code != EXIT_OK:
                raise ApplyFailedError("\n".join([*lines, message]))
            if self._source is not None:
                await self._source.remove(name)  # the dispatcher stops routing to it
            await self._tokens.drop(name)
            await self._storage.delete_objects(self._bucket, [self._key(name)])
            await self._changed("deleted")
            return Outcome(tuple(lines))

    @staticmethod
    async def _token(name: str, give: Callable[[str], Awaitable[str]]) -> None:
        """Issue or keep ``name``'s token (``ServiceTokens``); a failure says the service is applied
        without one, which the next update issues."""
        try:
            await give(name)
        except BucketrunError as error:
            raise ApplyFailedError(
                f"applied, but its token could not be kept: {error}; update the service to issue one"
            ) from error

    async def _changed(self, done: str) -> None:
        """Call ``on_change`` with every kept definition; a failure says the change itself is ``done``."""
        if self._on_change is None:
            return
        try:
            await self._on_change(await self.list())
        except BucketrunError as error:
            raise ApplyFailedError(
                f"{done}, but the store policy of the API's users was not updated: {error}; it is "
                "rewritten at the next change or restart"
            ) from error

    async def _exists(self, name: str) -> bool:
        try:
            await self.get(name)
        except UnknownServiceError:
            return False
        return True

    async def _check_quiet(self) -> None:
        """Create the definitions bucket if needed; refuse to write there while it notifies anyone.

        Runs before anything is applied, so this refusal leaves nothing behind."""
        await self._storage.ensure_bucket(self._bucket)
        if ids := await notification_ids(self._storage, self._bucket):
            raise ApplyFailedError(
                f"nothing was applied: the definitions bucket {self._bucket} has notification entries "
                f"({ids}), and writing there could trigger a service; give BUCKETRUN_API__DEFINITIONS_BUCKET "
                "a bucket that notifies nothing"
            )

    async def _apply(self, service: Service, *, new: bool) -> Outcome:
        """Validate, apply and keep ``service``. Nothing is left half-applied without saying so: a create
        that fails part-way is undone (``services delete`` of the name), and the error lists what the undo
        did, or what it could not undo; an update that fails part-way lists the changes it made."""
        lines: list[str] = []
        with fdl_file(service) as path:
            # Loading and test-rendering is CPU work: off the event loop.
            await asyncio.to_thread(check_service, path, cluster=self._settings.services.cluster)
            await self._check_quiet()
            message, code = await apply_services(self._settings, [path], emit=lines.append)
            if code == EXIT_BAD_FDL:
                raise InvalidServiceError(_tidy(message, path.parent))
            if code != EXIT_OK:
                failure = _tidy("\n".join([*lines, message]), path.parent)
                raise ApplyFailedError(await self._left_behind(service.name, failure, lines, new=new))
        if self._source is not None:
            try:
                await self._source.write(service.name, json.dumps(fdl_document(service)).encode())
            except (BucketrunError, OSError) as error:
                failure = f"error: its FDL could not be written to the {self._source.where}: {error}"
                raise ApplyFailedError(
                    await self._left_behind(service.name, failure, lines, new=new)
                ) from error
            lines.append(f"fdl {file_name(service.name)} written to the {self._source.where}")
        definition = json.dumps(kept_definition(service), indent=2).encode()
        try:
            await self._storage.put_object(
                self._bucket, self._key(service.name), definition, content_type="application/json"
            )
        except BucketrunError as error:
            failure = f"error: its definition could not be kept in {self._bucket}: {error}"
            raise ApplyFailedError(await self._left_behind(service.name, failure, lines, new=new)) from error
        return Outcome(tuple(lines))

    async def _left_behind(self, name: str, failure: str, applied: Sequence[str], *, new: bool) -> str:
        """The error of an apply that stopped part-way, saying what is left: a create is undone first."""
        if not new:
            done = "\n".join(applied) or "(no change)"
            return f"{failure}\nthe service was not updated; changes already applied:\n{done}"
        undo: list[str] = []
        if self._source is not None:
            with contextlib.suppress(BucketrunError, OSError):  # the delete below reports the rest
                await self._source.remove(name)
        message, code = await delete_services(self._settings, [name], [], emit=undo.append)
        undone = "\n".join(undo)
        if code == EXIT_OK:
            return f"{failure}\nthe service was not created; what was applied is undone:\n{undone}"
        return (
            f"{failure}\nthe service was not created, and undoing it failed ({message}); left behind "
            f"(remove with `bucketrun services delete {name}`):\n" + ("\n".join(applied) or "(nothing)")
        )
