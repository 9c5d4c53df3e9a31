# SPDX-License-Identifier: Apache-2.0
"""The config tools through the binary: validate -c and -t with their exit codes, the published JSON Schema
(Draft 2020-12, checked with python3-jsonschema, the reference validator) against every file in Config/, and the
dump loading back to the same configuration."""
import json
import subprocess
import tomllib
from pathlib import Path

import jsonschema
import pytest

from conftest import JESTER, ROOT

CONFIG = ROOT / "Config"


def jester(*args):
    return subprocess.run([JESTER, *args], capture_output=True, text=True, timeout=30)


def schema(*flags):
    document = json.loads(jester("config", "schema", *flags).stdout)
    assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(document)
    return jsonschema.Draft202012Validator(document)


@pytest.fixture(scope="module")
def schemas():
    return {"main": schema(), "fragment": schema("--fragment")}


@pytest.fixture(scope="module")
def bad_listener(tmp_path_factory):
    path = tmp_path_factory.mktemp("config") / "bad.toml"
    path.write_text('[[listeners]]\nname = "web"\naddress = "localhost:19703"\n')
    return path


def main_files():
    return sorted(CONFIG.glob("*.toml")) + sorted((CONFIG / "examples").glob("*.toml"))


@pytest.mark.parametrize("path", main_files(), ids=lambda p: str(p.relative_to(CONFIG)))
def test_every_shipped_file_passes_the_schema_and_validates(schemas, path):
    errors = list(schemas["main"].iter_errors(tomllib.loads(path.read_text())))
    assert not errors, [error.message for error in errors]
    result = jester("config", "validate", "-c", str(path))
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("path", sorted((CONFIG / "conf.d").glob("*.toml")), ids=lambda p: p.name)
def test_every_fragment_passes_the_fragment_schema(schemas, path):
    errors = list(schemas["fragment"].iter_errors(tomllib.loads(path.read_text())))
    assert not errors, [error.message for error in errors]


def test_the_schema_refuses_what_the_loader_refuses(schemas, tmp_path):
    shipped = tomllib.loads((CONFIG / "jester.toml").read_text())
    for change, key in [({"server": {"wrokers": 2}}, "wrokers"), ({"http": {"keepalive_timeout": 75}}, "75"),
                        ({"http": {"keepalive_timeout": "1h30m"}}, "1h30m"), ({"server": {"workers": "2"}}, "'2'")]:
        document = {**shipped, **change}
        errors = list(schemas["main"].iter_errors(document))
        assert errors and any(key in error.message for error in errors), (change, [e.message for e in errors])
    # Substitutions pass where the loader expands them.
    document = {**shipped, "server": {"workers": "${WORKERS:-2}", "drain_timeout": "${DRAIN:-30s}"}}
    assert not list(schemas["main"].iter_errors(document))
    # A fragment has no include, and needs no listeners.
    assert not list(schemas["fragment"].iter_errors({"routes": [{"path_prefix": "/", "upstream": "app"}]}))
    assert list(schemas["fragment"].iter_errors({"include": ["x.toml"]}))


def test_validate_takes_c_and_t_like_run(bad_listener):
    good = str(CONFIG / "jester.toml")
    for args in [("config", "validate", "-c", good), ("config", "validate", good), ("-t", "-c", good)]:
        result = jester(*args)
        assert result.returncode == 0, (args, result.stderr)
        assert "configuration is valid" in result.stdout
    for args in [("config", "validate", "-c", str(bad_listener)), ("-t", "-c", str(bad_listener))]:
        result = jester(*args)
        assert result.returncode == 1, (args, result.stdout)
        assert f"{bad_listener}:3:1: error: 'address' in [[listeners]] must be an IP address" in result.stderr
        assert 'use "127.0.0.1:19703" or "[::1]:19703"' in result.stderr
    both = jester("config", "validate", "-c", good, str(bad_listener))
    assert both.returncode != 0 and "give the configuration file once" in both.stderr


def test_start_refuses_a_host_name_listener_as_validate_does(bad_listener):
    result = jester("run", "-c", str(bad_listener))
    assert result.returncode == 1
    assert "must be an IP address and port" in result.stderr and "inet_pton" not in result.stderr


@pytest.mark.parametrize("path", main_files(), ids=lambda p: str(p.relative_to(CONFIG)))
def test_the_dump_loads_back_to_the_same_configuration(tmp_path, path):
    dumped = jester("config", "dump", "-c", str(path))
    assert dumped.returncode == 0, dumped.stderr
    assert 'max_body_size = "' in dumped.stdout and "http2_max_concurrent_streams" in dumped.stdout
    copy = path.parent / f".dump-{tmp_path.name}.toml"  # beside the original: relative files resolve the same
    try:
        copy.write_text(dumped.stdout)
        again = jester("config", "validate", "-c", str(copy))
        assert again.returncode == 0, again.stderr
        original_hash = dumped.stdout.split("(hash ")[1].split(")")[0]
        assert f"(hash {original_hash})" in again.stdout
    finally:
        copy.unlink(missing_ok=True)


def test_toml_syntax_errors_are_said_in_jesters_words(tmp_path):
    # The mistakes of issue 19, through the binary: where the parser stopped, and where the string or key began.
    head = '[[listeners]]\nname = "web"\naddress = "127.0.0.1:19703"\n\n[[routes]]\n'
    cases = [
        ('name = "api\n', "6:12: error: invalid TOML: unterminated string starting at 6:8"),
        ('name = "api"\nname = "web"\n', "7:1: error: invalid TOML: 'name' is already set at {file}:6:1"),
        ('path_regex = "^/api/\\d+"\n', "6:21: error: invalid TOML: invalid escape sequence '\\d' in a string"),
    ]
    for index, (body, expected) in enumerate(cases):
        path = tmp_path / f"syntax-{index}.toml"
        path.write_text(head + body)
        for args in [("config", "validate", "-c", str(path)), ("-t", "-c", str(path))]:
            result = jester(*args)
            assert result.returncode == 1, (args, result.stdout)
            assert f"{path}:{expected.format(file=path)}" in result.stderr, result.stderr
            assert "Error while parsing" not in result.stderr


def test_validate_checks_a_control_plane_snapshot_over_the_file(tmp_path):
    """A snapshot laid over the bootstrap file: a good one is valid and answers with its own hash; a bad one is
    refused with every error at its JSON pointer; an unreadable one is an error too."""
    boot = tmp_path / "jester.toml"
    boot.write_text('[[listeners]]\nname = "web"\naddress = "127.0.0.1:19704"\n\n'
                    '[[routes]]\nname = "file"\nrespond = { status = 200 }\n')
    plain = jester("config", "validate", "-c", str(boot))
    assert plain.returncode == 0, plain.stderr

    good = tmp_path / "good.json"
    good.write_text(json.dumps({"routes": [{"name": "api", "path_prefix": "/api/", "upstream": "api"}],
                                "upstreams": {"api": {"targets": ["127.0.0.1:19705"]}}}))
    result = jester("config", "validate", "-c", str(boot), "--snapshot", str(good))
    assert result.returncode == 0, result.stderr
    assert f"with {good}: configuration is valid" in result.stdout
    assert result.stdout.split("hash ")[1] != plain.stdout.split("hash ")[1]

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"listeners": [], "routes": [{"name": "api", "upstream": "missing"}]}))
    result = jester("config", "validate", "-c", str(boot), "--snapshot", str(bad))
    assert result.returncode == 1
    assert f"snapshot {bad}#/listeners: error: 'listeners' is the bootstrap file's to set" in result.stderr
    assert f"snapshot {bad}#/routes/0/upstream: error: route 'api' names upstream 'missing'" in result.stderr

    result = jester("config", "validate", "-c", str(boot), "--snapshot", str(tmp_path / "absent.json"))
    assert result.returncode == 1
    assert "cannot read the snapshot" in result.stderr
