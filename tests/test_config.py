"""Reading settings: `SERVICE_*` variables, a TOML file, and how problems are reported."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict

from service.config import ConfigError, RawConfig, Settings, validate_section

SECRET = "hunter2-S3CR3T-do-not-print"


def settings_from(environ: dict[str, str], config_file: Path | None = None) -> Settings:
    """Read and validate the service's own settings, reporting reading problems first."""
    raw = RawConfig.load(environ, config_file)
    try:
        settings = validate_section(raw, Settings)
    except ConfigError as exc:
        raise ConfigError([*raw.problems, *exc.problems]) from None
    if raw.problems:
        raise ConfigError(raw.problems)
    return settings


def problems_of(environ: dict[str, str], config_file: Path | None = None) -> list[str]:
    """The problems reported for this input, whether reading or validating found them."""
    with pytest.raises(ConfigError) as caught:
        settings_from(environ, config_file)
    assert str(caught.value) == "\n".join(caught.value.problems)
    return caught.value.problems


def toml_file(tmp_path: Path, text: str, name: str = "service.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


class IntervalSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    interval: float = 1.0
    url: str


# --- the environment ------------------------------------------------------------------------


def test_only_prefixed_variables_are_read_with_lowercased_keys() -> None:
    raw = RawConfig.load(
        {
            "SERVICE_LOG_LEVEL": "debug",
            "SERVICE_TICKER__INTERVAL": "5",
            "HOME": "/root",
            "MY_SERVICE_X": "1",
            "SERVICEX": "1",
            "service_log_format": "json",
        }
    )
    assert raw.values == {"log_level": "debug", "ticker": {"interval": "5"}}
    assert raw.origins == {
        ("log_level",): "SERVICE_LOG_LEVEL",
        ("ticker", "interval"): "SERVICE_TICKER__INTERVAL",
    }


def test_double_underscore_nests_at_any_depth() -> None:
    raw = RawConfig.load({"SERVICE_A__B__C": "1", "SERVICE_A__D": "2"})
    assert raw.values == {"a": {"b": {"c": "1"}, "d": "2"}}


def test_defaults_without_any_input() -> None:
    assert settings_from({}) == Settings(
        workers=None, log_format=None, log_level="info", shutdown_timeout=25.0
    )


def test_settings_from_the_environment() -> None:
    settings = settings_from(
        {
            "SERVICE_WORKERS": "ticker,jobs",
            "SERVICE_LOG_FORMAT": "json",
            "SERVICE_LOG_LEVEL": "warning",
            "SERVICE_SHUTDOWN_TIMEOUT": "2.5",
        }
    )
    assert settings.workers == ("ticker", "jobs")
    assert settings.log_format == "json"
    assert settings.log_level == "warning"
    assert settings.shutdown_timeout == 2.5


def test_worker_sections_are_not_settings_of_the_service() -> None:
    settings = settings_from({"SERVICE_TICKER__INTERVAL": "5", "SERVICE_LOG_LEVEL": "error"})
    assert settings.log_level == "error"


# --- the file -------------------------------------------------------------------------------

FILE = """\
workers = ["ticker", "pkg.mod:reporter"]
log_level = "debug"
shutdown_timeout = 10

[ticker]
interval = 5
name = "from the file"
"""


def test_toml_file_given_as_argument(tmp_path: Path) -> None:
    path = toml_file(tmp_path, FILE)
    raw = RawConfig.load({}, path)
    assert raw.values["ticker"] == {"interval": 5, "name": "from the file"}
    assert raw.origins[("ticker", "interval")] == f"{path}: ticker.interval"
    settings = validate_section(raw, Settings)
    assert settings.workers == ("ticker", "pkg.mod:reporter")
    assert settings.log_level == "debug"
    assert settings.shutdown_timeout == 10.0


def test_toml_file_named_by_service_config(tmp_path: Path) -> None:
    path = toml_file(tmp_path, FILE)
    raw = RawConfig.load({"SERVICE_CONFIG": str(path)})
    assert raw.values["shutdown_timeout"] == 10
    assert "config" not in raw.values  # SERVICE_CONFIG names the file, it is no setting


def test_empty_service_config_reads_no_file() -> None:
    assert RawConfig.load({"SERVICE_CONFIG": ""}).values == {}


def test_config_file_argument_wins_over_service_config(tmp_path: Path) -> None:
    path = toml_file(tmp_path, "log_level = 'error'\n")
    raw = RawConfig.load({"SERVICE_CONFIG": str(tmp_path / "absent.toml")}, path)
    assert raw.values == {"log_level": "error"}


def test_dotted_keys_and_tables_name_the_same_setting(tmp_path: Path) -> None:
    dotted = RawConfig.load({}, toml_file(tmp_path, "ticker.interval = 3\n", "a.toml"))
    table = RawConfig.load({}, toml_file(tmp_path, "[ticker]\ninterval = 3\n", "b.toml"))
    env = RawConfig.load({"SERVICE_TICKER__INTERVAL": "3"})
    assert dotted.values == table.values == {"ticker": {"interval": 3}}
    assert env.values == {"ticker": {"interval": "3"}}


def test_environment_overrides_the_file_key_by_key(tmp_path: Path) -> None:
    path = toml_file(tmp_path, FILE)
    raw = RawConfig.load(
        {"SERVICE_TICKER__INTERVAL": "7", "SERVICE_SHUTDOWN_TIMEOUT": "3", "SERVICE_CONFIG": ""},
        path,
    )
    assert raw.values["ticker"] == {"interval": "7", "name": "from the file"}
    assert raw.origins[("ticker", "interval")] == "SERVICE_TICKER__INTERVAL"
    assert raw.origins[("ticker", "name")] == f"{path}: ticker.name"
    settings = validate_section(raw, Settings)
    assert settings.shutdown_timeout == 3.0  # from the environment
    assert settings.log_level == "debug"  # from the file
    assert settings.workers == ("ticker", "pkg.mod:reporter")


def test_environment_worker_list_replaces_the_files(tmp_path: Path) -> None:
    path = toml_file(tmp_path, FILE)
    assert settings_from({"SERVICE_WORKERS": "jobs"}, path).workers == ("jobs",)


# --- SERVICE_WORKERS ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("ticker", ("ticker",)),
        ("ticker,jobs", ("ticker", "jobs")),
        ("  ticker ,  jobs  ", ("ticker", "jobs")),
        ("ticker,,jobs,", ("ticker", "jobs")),
        (",ticker, ,", ("ticker",)),
        ("pkg.mod:reporter, ticker", ("pkg.mod:reporter", "ticker")),
        ("", ()),
        (" , ", ()),
    ],
)
def test_worker_list_is_split_on_commas(value: str, expected: tuple[str, ...]) -> None:
    assert settings_from({"SERVICE_WORKERS": value}).workers == expected


def test_worker_list_as_a_toml_array(tmp_path: Path) -> None:
    path = toml_file(tmp_path, 'workers = ["jobs", "pkg.mod:reporter"]\n')
    assert settings_from({}, path).workers == ("jobs", "pkg.mod:reporter")


def test_worker_list_as_a_toml_string(tmp_path: Path) -> None:
    path = toml_file(tmp_path, 'workers = "jobs, ticker"\n')
    assert settings_from({}, path).workers == ("jobs", "ticker")


def test_no_worker_list_means_the_default_selection() -> None:
    assert settings_from({}).workers is None


def test_worker_list_entries_must_be_strings(tmp_path: Path) -> None:
    path = toml_file(tmp_path, 'workers = ["jobs", 3]\n')
    [problem] = problems_of({}, path)
    assert problem.startswith(f"{path}: workers: ")


# --- log format and level -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"), [("JSON", "json"), ("Console", "console"), ("json", "json")]
)
def test_log_format_ignores_case(value: str, expected: str) -> None:
    assert settings_from({"SERVICE_LOG_FORMAT": value}).log_format == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("DEBUG", "debug"), ("Info", "info"), ("WARNING", "warning"), ("CriTical", "critical")],
)
def test_log_level_ignores_case(value: str, expected: str) -> None:
    assert settings_from({"SERVICE_LOG_LEVEL": value}).log_level == expected


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SERVICE_LOG_FORMAT", "text"),
        ("SERVICE_LOG_FORMAT", ""),
        ("SERVICE_LOG_LEVEL", "verbose"),
        ("SERVICE_LOG_LEVEL", "warn"),
    ],
)
def test_unknown_log_format_or_level_is_rejected(variable: str, value: str) -> None:
    [problem] = problems_of({variable: value})
    assert problem.startswith(f"{variable}: Input should be ")


def test_log_level_from_the_file_ignores_case(tmp_path: Path) -> None:
    path = toml_file(tmp_path, 'log_level = "ERROR"\nlog_format = "Json"\n')
    settings = settings_from({}, path)
    assert (settings.log_level, settings.log_format) == ("error", "json")


# --- shutdown timeout -----------------------------------------------------------------------


@pytest.mark.parametrize("value", ["0", "0.0", "-1", "-0.5"])
def test_shutdown_timeout_must_be_positive(value: str) -> None:
    [problem] = problems_of({"SERVICE_SHUTDOWN_TIMEOUT": value})
    assert problem == "SERVICE_SHUTDOWN_TIMEOUT: Input should be greater than 0"


@pytest.mark.parametrize("value", ["nan", "inf", "infinity"])
def test_shutdown_timeout_must_be_finite(value: str) -> None:
    # An infinite timeout would disarm the forced exit: the service could hang on shutdown.
    [problem] = problems_of({"SERVICE_SHUTDOWN_TIMEOUT": value})
    assert problem == "SERVICE_SHUTDOWN_TIMEOUT: Input should be a finite number"


@pytest.mark.parametrize("value", ["abc", "", "10s", "1,5"])
def test_shutdown_timeout_must_be_a_number(value: str) -> None:
    [problem] = problems_of({"SERVICE_SHUTDOWN_TIMEOUT": value})
    assert problem.startswith("SERVICE_SHUTDOWN_TIMEOUT: Input should be a valid number")


@pytest.mark.parametrize(("value", "expected"), [("0.1", 0.1), ("25", 25.0), (" 3 ", 3.0)])
def test_shutdown_timeout_accepts_positive_numbers(value: str, expected: float) -> None:
    assert settings_from({"SERVICE_SHUTDOWN_TIMEOUT": value}).shutdown_timeout == expected


def test_shutdown_timeout_from_the_file_names_the_file_key(tmp_path: Path) -> None:
    path = toml_file(tmp_path, "shutdown_timeout = -1\n")
    assert problems_of({}, path) == [f"{path}: shutdown_timeout: Input should be greater than 0"]


# --- malformed names and conflicting keys ---------------------------------------------------


@pytest.mark.parametrize(
    "name", ["SERVICE_A____B", "SERVICE_TICKER__", "SERVICE___TICKER", "SERVICE_", "SERVICE_A__"]
)
def test_malformed_variable_names_are_reported(name: str) -> None:
    assert problems_of({name: SECRET}) == [f"{name}: malformed name (use SERVICE_SECTION__KEY)"]


def test_scalar_and_section_of_the_same_name_in_the_environment() -> None:
    problems = problems_of({"SERVICE_CACHE": SECRET, "SERVICE_CACHE__URL": SECRET})
    assert problems == ["SERVICE_CACHE__URL: conflicts with SERVICE_CACHE, which is not a section"]


def test_scalar_in_the_environment_for_a_section_of_the_file(tmp_path: Path) -> None:
    path = toml_file(tmp_path, '[cache]\nurl = "sqlite:///x.db"\n')
    assert problems_of({"SERVICE_CACHE": SECRET}, path) == [
        "SERVICE_CACHE: names a section, not a setting"
    ]


def test_section_in_the_environment_for_a_scalar_of_the_file(tmp_path: Path) -> None:
    path = toml_file(tmp_path, 'cache = "sqlite:///x.db"\n')
    assert problems_of({"SERVICE_CACHE__URL": SECRET}, path) == [
        f"SERVICE_CACHE__URL: conflicts with {path}: cache, which is not a section"
    ]


# --- unreadable and invalid files -----------------------------------------------------------


def test_missing_file_is_one_problem_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    [problem] = problems_of({}, path)
    assert problem == f"{path}: cannot read config file: No such file or directory"


def test_missing_file_named_by_service_config(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    [problem] = problems_of({"SERVICE_CONFIG": str(path)})
    assert problem.startswith(f"{path}: cannot read config file")


def test_unreadable_file_is_one_problem_naming_it(tmp_path: Path) -> None:
    [problem] = problems_of({}, tmp_path)  # a directory: read fails even for root
    assert problem.startswith(f"{tmp_path}: cannot read config file: ")


def test_invalid_toml_names_the_file_and_not_the_content(tmp_path: Path) -> None:
    path = toml_file(tmp_path, f"password = {SECRET}\n")
    [problem] = problems_of({}, path)
    assert problem.startswith(f"{path}: not valid TOML: ")
    assert "line 1" in problem
    assert SECRET not in problem


def test_file_that_is_not_utf8_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes('name = "caf\xe9"\n'.encode("latin-1"))
    [problem] = problems_of({}, path)
    assert problem.startswith(f"{path}: not valid TOML: ")


# --- reporting ------------------------------------------------------------------------------


def test_every_reading_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    problems = problems_of(
        {
            "SERVICE_A____B": "1",
            "SERVICE_X__": "2",
            "SERVICE_CACHE": "3",
            "SERVICE_CACHE__URL": "4",
        },
        path,
    )
    assert len(problems) == 4
    assert problems[0].startswith(f"{path}: ")
    assert [p.split(":")[0] for p in problems[1:]] == [
        "SERVICE_A____B",
        "SERVICE_CACHE__URL",
        "SERVICE_X__",
    ]


def test_every_invalid_setting_is_reported_at_once() -> None:
    problems = problems_of(
        {
            "SERVICE_LOG_FORMAT": "text",
            "SERVICE_LOG_LEVEL": "loud",
            "SERVICE_SHUTDOWN_TIMEOUT": "0",
        }
    )
    assert sorted(p.split(":")[0] for p in problems) == [
        "SERVICE_LOG_FORMAT",
        "SERVICE_LOG_LEVEL",
        "SERVICE_SHUTDOWN_TIMEOUT",
    ]


def test_problems_name_where_each_value_came_from(tmp_path: Path) -> None:
    path = toml_file(tmp_path, 'log_level = "loud"\nshutdown_timeout = 5\n')
    problems = problems_of({"SERVICE_SHUTDOWN_TIMEOUT": "-5", "SERVICE_LOG_FORMAT": "x"}, path)
    assert sorted(p.rsplit(": ", 1)[0] for p in problems) == sorted(
        [
            f"{path}: log_level",
            "SERVICE_SHUTDOWN_TIMEOUT",
            "SERVICE_LOG_FORMAT",
        ]
    )


@pytest.mark.parametrize(
    "environ",
    [
        {"SERVICE_SHUTDOWN_TIMEOUT": SECRET},
        {"SERVICE_LOG_LEVEL": SECRET},
        {"SERVICE_LOG_FORMAT": SECRET},
        {"SERVICE_A____B": SECRET},
        {"SERVICE_DB": SECRET, "SERVICE_DB__URL": SECRET},
    ],
)
def test_problems_never_echo_the_value(environ: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from(environ)
    assert caught.value.problems
    assert SECRET not in str(caught.value)
    assert SECRET.lower() not in str(caught.value).lower()


def test_problems_never_echo_a_value_from_the_file(tmp_path: Path) -> None:
    path = toml_file(tmp_path, f'shutdown_timeout = "{SECRET}"\nlog_level = "{SECRET}"\n')
    problems = problems_of({}, path)
    assert len(problems) == 2
    assert all(SECRET not in problem for problem in problems)


# --- worker sections ------------------------------------------------------------------------


def test_section_is_validated_against_its_model() -> None:
    raw = RawConfig.load({"SERVICE_TICKER__INTERVAL": "2.5", "SERVICE_TICKER__URL": "x://y"})
    section = validate_section(raw, IntervalSettings, ("ticker",))
    assert section == IntervalSettings(interval=2.5, url="x://y")


def test_section_problems_name_the_variable() -> None:
    raw = RawConfig.load({"SERVICE_TICKER__INTERVAL": SECRET, "SERVICE_TICKER__NOPE": "1"})
    with pytest.raises(ConfigError) as caught:
        validate_section(raw, IntervalSettings, ("ticker",))
    assert sorted(caught.value.problems) == [
        "SERVICE_TICKER__INTERVAL: Input should be a valid number, unable to parse string as a "
        "number",
        "SERVICE_TICKER__NOPE: unknown setting",
        "SERVICE_TICKER__URL: Field required",  # absent: named as the variable that would set it
    ]
    assert SECRET not in str(caught.value)


def test_section_problems_name_the_file_key(tmp_path: Path) -> None:
    path = toml_file(tmp_path, '[ticker]\ninterval = "soon"\nurl = "x://y"\n')
    with pytest.raises(ConfigError) as caught:
        validate_section(RawConfig.load({}, path), IntervalSettings, ("ticker",))
    [problem] = caught.value.problems
    assert problem.startswith(f"{path}: ticker.interval: Input should be a valid number")


def test_scalar_where_a_section_is_expected_names_the_variable() -> None:
    raw = RawConfig.load({"SERVICE_TICKER": SECRET})
    with pytest.raises(ConfigError) as caught:
        validate_section(raw, IntervalSettings, ("ticker",))
    [problem] = caught.value.problems
    assert problem.startswith("SERVICE_TICKER: ")
    assert SECRET not in problem


class Stations(BaseModel):
    model_config = ConfigDict(extra="forbid")

    codes: list[str] = []
    optional: tuple[str, ...] | None = None
    label: str = ""


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("EGLL,LFPG", ["EGLL", "LFPG"]),
        (" EGLL , LFPG ,", ["EGLL", "LFPG"]),
        ('["EGLL", "LF,PG"]', ["EGLL", "LF,PG"]),  # JSON, for a value with a comma in it
        ("", []),
    ],
)
def test_a_list_setting_reads_comma_separated_values_from_the_environment(
    value: str, expected: list[str]
) -> None:
    raw = RawConfig.load({"SERVICE_WEATHER__CODES": value, "SERVICE_WEATHER__OPTIONAL": "A,B"})
    settings = validate_section(raw, Stations, ("weather",))
    assert settings.codes == expected
    assert settings.optional == ("A", "B")


def test_only_lists_and_only_from_the_environment_are_split(tmp_path: Path) -> None:
    path = tmp_path / "service.toml"
    path.write_text('[weather]\ncodes = "EGLL,LFPG"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        validate_section(RawConfig.load({}, path), Stations, ("weather",))
    assert error.value.problems == [f"{path}: weather.codes: Input should be a valid list"]
    raw = RawConfig.load({"SERVICE_WEATHER__LABEL": "a,b"})
    assert validate_section(raw, Stations, ("weather",)).label == "a,b"
