"""bucketrun.api.catalog.fdl_file: a service's name never chooses where its FDL file is written.

Found by Schemathesis (tests/integration/test_api_schema.py): POST /system/services with the name
'a/b' or one holding a NUL answered 500, and '../x' wrote x.yaml beside the temporary folder, before
the name was checked.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bucketrun.api.catalog import InvalidServiceError, check_service, fdl_file
from bucketrun.api.oscar_types import Service


@pytest.mark.parametrize("name", ["../escaped-by-name", "a/b", "nul\x00byte", "/absolute", "..", "."])
def test_a_name_that_is_not_a_file_name_stays_in_the_folder_and_is_refused_by_the_check(name: str) -> None:
    with fdl_file(Service(name=name, image="busybox:1.36", script="echo hi\n")) as path:
        folder = path.parent
        assert folder.name.startswith("bucketrun-api-")
        assert list(folder.iterdir()) == [path], "the file is the folder's only entry"
        with pytest.raises(InvalidServiceError) as refused:
            check_service(path, cluster=None)
    assert f"field 'name': {name!r} is not a DNS-1123 label" in str(refused.value)
    assert not Path(folder.parent, "escaped-by-name.yaml").exists()


def test_a_valid_name_is_the_file_name_services_validate_names() -> None:
    with fdl_file(Service(name="upper", image="busybox:1.36", script="echo hi\n")) as path:
        assert path.name == "upper.yaml"
        check_service(path, cluster=None)
