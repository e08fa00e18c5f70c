"""docs/CONFIGURATION.md: the settings of every bucketrun process, from their models.

``python -m bucketrun.config_reference > docs/CONFIGURATION.md`` (needs the ``api`` extra, whose
settings it documents too).
"""

from __future__ import annotations

from typing import Final

from bucketrun.api.settings import ApiSettings
from dispatcher.runtime.config_doc import reference_markdown

API_NOTE: Final = (
    "Read by `bucketrun api` only, from the environment only (not from the `BUCKETRUN_CONFIG` file). The "
    "API also reads the `storage`, `cluster`, `services`, `amqp`, `metrics` and `log` groups above."
)


def configuration_reference() -> str:
    """The reference: the groups every process reads, then the API's."""
    return reference_markdown([("api", ApiSettings, API_NOTE)])


if __name__ == "__main__":
    print(configuration_reference(), end="")  # noqa: T201 - the generator's output
