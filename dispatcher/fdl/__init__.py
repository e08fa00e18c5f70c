"""OSCAR service definitions (FDL): loading, validation and the immutable models the rest of bucketrun uses.

Modules: ``model`` (``ServiceDefinition``, ``BucketrunOptions``), ``storage`` (input/output paths and
storage providers), ``locations`` (how a ``path`` names bucket and folder), ``loader`` (files,
directories, text; checks across services), ``clusters`` (one definition of a service defined for
several OSCAR clusters), ``fdl`` (OSCAR's spellings and the policy for fields bucketrun does not
implement, documented in ``unsupported``), ``script`` (inline text vs script file), ``safe_yaml``
(bounded YAML parsing), ``names`` and ``records_location`` (records never under an input path),
``errors`` (warnings and the error).
"""

from dispatcher.fdl.errors import ServiceDefinitionError, ServiceProblem, ServiceWarning
from dispatcher.fdl.loader import LoadedServices, load_services, load_services_text
from dispatcher.fdl.model import (
    RESERVED_VARIABLES,
    BucketrunOptions,
    ServiceDefinition,
    is_reserved_variable,
)
from dispatcher.fdl.records_location import RecordsOverlapError, check_records_location
from dispatcher.fdl.storage import (
    DEFAULT_EVENTS,
    DEFAULT_PROVIDER,
    InputPath,
    OutputPath,
    StorageProvider,
)

__all__ = [
    "DEFAULT_EVENTS",
    "DEFAULT_PROVIDER",
    "RESERVED_VARIABLES",
    "BucketrunOptions",
    "InputPath",
    "LoadedServices",
    "OutputPath",
    "RecordsOverlapError",
    "ServiceDefinition",
    "ServiceDefinitionError",
    "ServiceProblem",
    "ServiceWarning",
    "StorageProvider",
    "check_records_location",
    "is_reserved_variable",
    "load_services",
    "load_services_text",
]
