"""Value checks behind service definitions: quantities, names, the YAML schema and the script rule."""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from dispatcher.domain.quantity import positive_quantity as quantity_value
from dispatcher.fdl.names import (
    check_bucket_name,
    check_dns_subdomain,
    check_env_name,
    check_image,
    check_label_key,
    check_label_value,
    check_service_name,
)
from dispatcher.fdl.safe_yaml import YamlLimitError, load_yaml
from dispatcher.fdl.script import looks_like_path

# --- quantities -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1.0", Fraction(1)),
        ("0.5", Fraction(1, 2)),
        ("500m", Fraction(1, 2)),
        ("1Gi", Fraction(2**30)),
        ("512Mi", Fraction(512 * 2**20)),
        ("16Gi", Fraction(16 * 2**30)),
        ("4096Mi", Fraction(4096 * 2**20)),
        ("2e3", Fraction(2000)),
        ("1E-2", Fraction(1, 100)),
        (".5", Fraction(1, 2)),
        ("5.", Fraction(5)),
        ("+1", Fraction(1)),
        ("1k", Fraction(1000)),
        ("1n", Fraction(1, 10**9)),
    ],
)
def test_valid_quantities(text, value):
    assert quantity_value(text) == value


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("1..0", "invalid quantity '1..0'"),
        ("${CPU}", "invalid quantity '${CPU}'"),
        ("1ki", "invalid quantity '1ki'"),
        ("1K", "invalid quantity '1K'"),  # only lower-case k is a decimal suffix
        ("1 Gi", "invalid quantity '1 Gi'"),
        (" 1", "invalid quantity ' 1'"),
        ("0x10", "invalid quantity '0x10'"),
        ("1e", "invalid quantity '1e'"),
        ("", "invalid quantity ''"),
        ("0", "must be greater than zero"),
        ("-1", "must be greater than zero"),
        ("1e999999999", "out of range"),
        ("10Ei", "out of range"),
        ("1" * 65, "invalid quantity"),
    ],
)
def test_invalid_quantities_name_the_value(text, fragment):
    with pytest.raises(ValueError, match="quantity") as caught:
        quantity_value(text)
    assert fragment in str(caught.value)


_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50}
_DECIMAL = {"": Fraction(1), "n": Fraction(1, 10**9), "u": Fraction(1, 10**6), "m": Fraction(1, 1000)}
_DECIMAL |= {"k": Fraction(10**3), "M": Fraction(10**6), "G": Fraction(10**9), "T": Fraction(10**12)}


@st.composite
def quantities(draw: st.DrawFn) -> tuple[str, Fraction]:
    """A quantity string built from parts, with its value computed from the same parts."""
    whole = draw(st.integers(min_value=0, max_value=9999))
    fraction_digits = draw(st.text(alphabet="0123456789", max_size=3))
    form = draw(st.sampled_from(["int", "dot", "trailing-dot", "leading-dot"]))
    if form == "int" or (form == "dot" and not fraction_digits):
        number_text, number = str(whole), Fraction(whole)
    elif form == "trailing-dot":
        number_text, number = f"{whole}.", Fraction(whole)
    elif form == "leading-dot":
        digits = fraction_digits or "5"
        number_text, number = f".{digits}", Fraction(int(digits), 10 ** len(digits))
    else:
        number_text = f"{whole}.{fraction_digits}"
        number = whole + Fraction(int(fraction_digits), 10 ** len(fraction_digits))
    kind = draw(st.sampled_from(["binary", "decimal", "exponent"]))
    if kind == "binary":
        suffix = draw(st.sampled_from(sorted(_BINARY)))
        return number_text + suffix, number * _BINARY[suffix]
    if kind == "decimal":
        suffix = draw(st.sampled_from(sorted(_DECIMAL)))
        return number_text + suffix, number * _DECIMAL[suffix]
    exponent = draw(st.integers(min_value=-9, max_value=9))
    letter = draw(st.sampled_from("eE"))
    return f"{number_text}{letter}{exponent}", number * Fraction(10) ** exponent


@given(quantities())
def test_generated_quantities_parse_to_their_value(case):
    text, value = case
    if value > 2**63 - 1:
        with pytest.raises(ValueError, match="out of range"):
            quantity_value(text)
    elif value > 0:
        assert quantity_value(text) == value
    else:
        with pytest.raises(ValueError, match="greater than zero"):
            quantity_value(text)


def _outcome(text: str) -> Fraction | str:
    try:
        return quantity_value(text)
    except ValueError as error:
        return str(error)


@given(st.text(max_size=30))
def test_any_text_is_a_positive_value_or_a_value_error_quoting_it(text):
    outcome = _outcome(text)
    if isinstance(outcome, str):
        assert repr(text) in outcome
    else:
        assert 0 < outcome <= 2**63 - 1
        assert text == text.strip()


def assert_checked(check: Callable[[str], str], value: str, *, valid: bool, message: str) -> None:
    """``check`` returns a valid ``value`` unchanged and refuses an invalid one with ``message``."""
    if valid:
        assert check(value) == value
    else:
        with pytest.raises(ValueError, match=message):
            check(value)


# --- names ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["grayify", "a", "split-video", "x" * 39, "0abc"])
def test_valid_service_names(name):
    assert check_service_name(name) == name


@pytest.mark.parametrize("name", ["", "Grayify", "-a", "a-", "a_b", "a.b", "x" * 40, "${NAME}", "a\n"])
def test_invalid_service_names(name):
    with pytest.raises(ValueError, match=r"DNS-1123 label|longer than 39") as caught:
        check_service_name(name)
    assert repr(name) in str(caught.value)


@pytest.mark.parametrize("name", ["abc", "video-process", "my.bucket.name", "a1b", "x" * 63])
def test_valid_bucket_names(name):
    assert check_bucket_name(name) == name


@pytest.mark.parametrize(
    "name", ["ab", "x" * 64, "ABC", "a_b", "-ab", "ab-", "a..b", "a.-b", "xn--abc", "abc-s3alias", "10.0.0.1"]
)
def test_invalid_bucket_names(name):
    with pytest.raises(ValueError, match="invalid bucket name"):
        check_bucket_name(name)


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("PATH", True),
        ("_x1", True),
        ("read_timeout", True),
        ("1X", False),
        ("A-B", False),
        ("A B", False),
        ("", False),
    ],
)
def test_env_names_are_c_identifiers(name, valid):
    assert_checked(check_env_name, name, valid=valid, message="must be a C identifier")


@pytest.mark.parametrize(
    ("key", "valid"),
    [
        ("app", True),
        ("app.kubernetes.io/name", True),
        ("slurm-job.vk.io/singularity-options", True),
        ("nvidia.com/gpu.present", True),
        ("a/b/c", False),
        ("Bad_Prefix/x", False),
        ("/x", False),
        ("x" * 64, False),
        ("-x", False),
        ("", False),
    ],
)
def test_label_keys(key, valid):
    assert_checked(check_label_key, key, valid=valid, message="invalid key")


@pytest.mark.parametrize(
    ("value", "valid"),
    [("", True), ("true", True), ("v1.2_3-x", True), ("-x", False), ("a b", False), ("x" * 64, False)],
)
def test_label_values(value, valid):
    assert_checked(check_label_value, value, valid=valid, message="invalid label value")


@pytest.mark.parametrize(
    ("image", "valid"),
    [
        ("ubuntu", True),
        ("grycap/imagemagick", True),
        ("ghcr.io/grycap/fire-detection:latest", True),
        ("registry.gitlab.polimi.it/ai-sprint/mask-detector:tag", True),
        ("localhost:5000/x/y:1.0", True),
        ("ai4oshub/posenet-tf@sha256:" + "a" * 64, True),
        ("docker://ai4oshub/x", False),
        ("Ubuntu", False),
        ("${IMAGE}", False),
        ("ubuntu latest", False),
        ("", False),
    ],
)
def test_image_references(image, valid):
    assert_checked(check_image, image, valid=valid, message="invalid image reference")


def test_dns_subdomain_limits():
    assert check_dns_subdomain("regcred") == "regcred"
    with pytest.raises(ValueError, match="not a DNS-1123 subdomain"):
        check_dns_subdomain("a..b")


# --- YAML -----------------------------------------------------------------------------------------


def test_yaml_uses_the_core_schema_like_oscars_go_parser():
    document = load_yaml(
        "a: yes\nb: on\nc: 2024-01-01\nd: 010\ne: 0o17\nf: 0x1F\ng: ~\nh: True\ni: 1.10\nj: .inf\nk: 1_000\n"
    )
    assert document == {
        "a": "yes",
        "b": "on",
        "c": "2024-01-01",
        "d": 10,
        "e": 15,
        "f": 31,
        "g": None,
        "h": True,
        "i": 1.1,
        "j": float("inf"),
        "k": "1_000",
    }
    assert document["i"].text == "1.10"
    assert document["d"].text == "010"


def test_yaml_tabs_separate_but_do_not_indent():
    assert load_yaml("a: x\t\t\nb: [1,\t2]\t# c\n") == {"a": "x", "b": [1, 2]}
    with pytest.raises(yaml.YAMLError, match="found character '\\\\t' that cannot start any token"):
        load_yaml("a:\n\tb: 1\n")


def test_yaml_merge_keys_work_and_count_as_aliases():
    assert load_yaml("base: &b {x: 1}\nuse:\n  <<: *b\n  y: 2\n") == {
        "base": {"x": 1},
        "use": {"x": 1, "y": 2},
    }
    many = "base: &b {x: 1}\n" + "".join(f"u{i}: *b\n" for i in range(17))
    with pytest.raises(YamlLimitError, match="more than 16 YAML aliases"):
        load_yaml(many)


@pytest.mark.parametrize(
    "text", ["a: !!binary aGk=\n", "a: !!set {x}\n", "a: !!python/name:os.system\n", "a: !!int x\n"]
)
def test_yaml_exotic_tags_are_refused(text):
    with pytest.raises(yaml.YAMLError, match=r"constructor|not allowed|invalid integer"):
        load_yaml(text)


def test_yaml_empty_document_is_none():
    assert load_yaml("# nothing\n") is None


# --- script rule ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "is_path"),
    [
        ("script.sh", True),
        ("scripts/yolov3-object-detection.sh", True),
        ("/opt/mask-detector/script.sh", True),
        ("date", True),
        ("echo hi", False),
        ("script.sh\n", False),
        ("exec /opt/run.sh", False),
        ("run.sh;rm -rf /", False),
        ("$(cat x)", False),
    ],
)
def test_script_values_are_paths_only_when_they_look_like_file_names(value, is_path):
    assert looks_like_path(value) is is_path
