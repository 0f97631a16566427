"""Alerts by mail through luigi's own notifications (docs/alerts.md), received by a real SMTP server on
127.0.0.1 with luigi.cfg's own mail block uncommented:

- a nightly regression mails one alert that names the night, the config, each entry's optimizer, tonight's
  accuracy, the window's mean, the drop and the report; without an [email] receiver nothing is sent;
- with the local scheduler, luigi's worker mails each failed task at once: its scheduler's batch is never sent;
- under luigid, a failed task is retried once and then disabled, so the nightly exits 30, and luigid mails
  all the failures in one message.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import shutil
import socket
import subprocess
from pathlib import Path

import luigi
import luigi.configuration
import pytest
import yaml

from pipeline import NightlyReport
from tasks.reporting import history as nightly
from tests import test_nightly
from tests.conftest import REPO_ROOT, build, luigi_cli
from tests.mailbox import RECEIVER, mail_settings, serving_mailbox, site_cfg
from tests.test_scheduler import _api, _luigi, _worker_env, running_luigid

EXPERIMENT = test_nightly.EXPERIMENT
nightly_config = test_nightly.nightly_config  # the fixture: smoke.yaml cut to sgd and adam, one epoch
FIRST, SECOND = dt.date(2026, 3, 1), dt.date(2026, 3, 2)
PREFIX = "[fmnist-pipeline] "  # luigi.cfg's [email] prefix
# A bound on a nightly under luigid that should end by itself in well under a minute; without the retry
# limit it would never end.
NIGHTLY_LIMIT = 300


@pytest.fixture
def mailbox():
    with serving_mailbox() as box:
        yield box


def _regression_tonight(site: Path, config: Path) -> None:
    """Night FIRST trained, its history doctored to a perfect score (one synthetic image in ten is
    mislabelled, so a night scores at most about 0.9), the threshold tightened: every entry regresses SECOND."""
    build([NightlyReport(date=FIRST, config=str(config))])
    history_dir = site / "history" / EXPERIMENT
    doctored = [dict(row, test_accuracy_mean=1.0) for row in nightly.read_history(history_dir)]
    nightly.write_night(history_dir, FIRST.isoformat(), doctored)
    strict = yaml.safe_load(config.read_text())
    strict["nightly"].update(regression_window=1, regression_threshold=0.05)
    config.write_text(yaml.safe_dump(strict))


def _expected_alert(site: Path, config: Path) -> list[str]:
    """The alert's lines, recomputed from the history that night SECOND wrote: each entry's accuracy
    tonight against the doctored 1.0 of the one night before it."""
    tonight = [row for row in nightly.read_history(site / "history" / EXPERIMENT) if row["date"] == str(SECOND)]
    assert [(row["name"], row["optimizer"]) for row in tonight] == [("adam", "adam"), ("sgd", "sgd")]
    lines = [f"nightly {SECOND} of {config} (experiment {EXPERIMENT}): 2 regression(s)"]
    for row in tonight:
        accuracy = row["test_accuracy_mean"]
        lines.append(
            f"- {row['name']} (optimizer {row['optimizer']}): test accuracy {accuracy:.4f} is {1 - accuracy:.4f} "
            "below the mean 1.0000 of the previous 1 night(s) (threshold 0.0500)"
        )
    report = site / "reports" / EXPERIMENT / "nightly" / str(SECOND) / "report.html"
    assert report.is_file()
    lines.append(f"The report with the alert is at {report}")
    return lines


def _block_the_nights_runs(site: Path, night: dt.date) -> None:
    """A file where the night's run folders belong: each of the night's training runs fails."""
    (site / "runs" / "nightly").mkdir(parents=True)
    (site / "runs" / "nightly" / str(night)).write_text("not a folder\n")


def _nightly(date: dt.date, config: Path) -> list[str]:
    return ["NightlyReport", "--date", str(date), "--config", str(config)]


def test_a_regression_mails_one_alert_with_its_facts_and_nothing_without_a_receiver(
    site, nightly_config, mailbox, tmp_path
):
    _regression_tonight(site, nightly_config)
    settings = luigi.configuration.get_config()

    unmailed = luigi_cli(_nightly(SECOND, nightly_config), site_cfg(tmp_path / "no-mail.cfg", settings))
    assert unmailed.returncode == 30, unmailed.stderr[-3000:]
    assert "2 regression(s)" in unmailed.stderr
    assert mailbox.mails == [], "a mail went out with no [email] receiver configured"
    assert "email" not in unmailed.stderr.lower() and "smtp" not in unmailed.stderr.lower()

    # The rerun reports the night again and fails again; now luigi.cfg's mail block is filled in.
    mailed = luigi_cli(_nightly(SECOND, nightly_config), site_cfg(tmp_path / "mail.cfg", settings, mailbox.port))
    assert mailed.returncode == 30, mailed.stderr[-3000:]
    (mail,) = mailbox.mails
    assert mail.recipients == [RECEIVER] and mail.message["To"] == RECEIVER
    assert mail.message["From"] == "fmnist-pipeline@example.org"
    assert mail.subject == (
        f"{PREFIX}Luigi: NightlyReport(date={SECOND}, config={nightly_config}) FAILED. Host: {socket.gethostname()}"
    )
    expected, body = _expected_alert(site, nightly_config), mail.body.splitlines()
    start = body.index(f"RegressionAlert: {expected[0]}")
    assert body[start + 1 : start + len(expected)] == expected[1:], mail.body
    assert "Traceback" not in mail.body  # the alert alone: what to look at, not where it was raised


def test_with_the_local_scheduler_each_failed_run_of_a_night_mails_once(site, nightly_config, mailbox, tmp_path):
    _block_the_nights_runs(site, FIRST)
    cfg = site_cfg(tmp_path / "mail.cfg", luigi.configuration.get_config(), mailbox.port)
    done = luigi_cli(_nightly(FIRST, nightly_config), cfg)
    assert done.returncode == 30, done.stderr[-3000:]
    # One mail per failed task, at once: luigi's local scheduler cannot batch (the next test).
    mails = sorted(mailbox.mails, key=lambda mail: mail.subject)
    assert [re.sub(r"\(name=(\w+),.*", r"(\1)", mail.subject) for mail in mails] == [
        f"{PREFIX}Luigi: NightlyTrainRun(adam)",
        f"{PREFIX}Luigi: NightlyTrainRun(sgd)",
    ]
    for mail in mails:
        assert mail.recipients == [RECEIVER]
        assert f"date={FIRST}" in mail.subject and mail.subject.endswith(") FAILED. Host: " + socket.gethostname())
        assert f"StorageError: cannot write {site}/runs/nightly/{FIRST}/" in mail.body
        assert "Not a directory" in mail.body


class _Broken(luigi.Task):
    index = luigi.IntParameter()

    def complete(self):
        return False

    def run(self):
        raise RuntimeError(f"broken {self.index}")


class _ThreeBroken(luigi.WrapperTask):
    def requires(self):
        return [_Broken(index=index) for index in range(3)]


@contextlib.contextmanager
def _luigi_settings(sections: dict[str, dict[str, str]]):
    """Set luigi config options in this process for the block; restore what was there after."""
    config = luigi.configuration.get_config()
    undo = []
    for section, values in sections.items():
        if not config.has_section(section):
            config.add_section(section)
            undo.append((section, None, None))
        for key, value in values.items():
            undo.append((section, key, config.get(section, key, None)))
            config.set(section, key, value)
    try:
        yield
    finally:
        for section, key, value in reversed(undo):
            if key is None:
                config.remove_section(section)
            elif value is None:
                config.remove_option(section, key)
            else:
                config.set(section, key, value)


def test_luigis_local_scheduler_never_sends_its_batch_so_locally_the_worker_mails_each_failure(mailbox):
    """Why the local path mails once per failed task: luigi's in-process scheduler collects a batch when
    [scheduler] batch_emails is set, but sends it only when email_interval minutes have passed or when
    luigid shuts down, neither of which happens at the end of a command. If a luigi release starts
    sending it, this fails, and luigi.cfg can batch locally too."""
    mail = {"email": {"receiver": RECEIVER, "force_send": "true"}, "smtp": {"host": "127.0.0.1"}}
    mail["smtp"]["port"] = str(mailbox.port)
    batched = {"scheduler": {"batch_emails": "true"}, "worker": {"send_failure_email": "false"}}
    with _luigi_settings({**mail, **batched}):
        assert not luigi.build([_ThreeBroken()], local_scheduler=True, log_level="ERROR")
    assert mailbox.mails == [], "luigi's local scheduler sent its batch: batch locally too (docs/alerts.md)"

    with _luigi_settings(mail):
        assert not luigi.build([_ThreeBroken()], local_scheduler=True, log_level="ERROR")
    host = socket.gethostname()
    assert sorted(mail.subject for mail in mailbox.mails) == [
        f"Luigi: _Broken(index={index}) FAILED. Host: {host}" for index in range(3)
    ]


@pytest.fixture
def mailing_luigid(tmp_path, mailbox):
    """scripts/luigid.sh as shipped, run from a checkout whose luigi.cfg has the mail block filled in:
    luigid reads the luigi.cfg of the checkout the script starts it from. Retries after 1 s."""
    checkout = tmp_path / "checkout"
    (checkout / "scripts").mkdir(parents=True)
    script = Path(shutil.copy2(REPO_ROOT / "scripts" / "luigid.sh", checkout / "scripts"))
    (checkout / "luigi.cfg").write_text((REPO_ROOT / "luigi.cfg").read_text() + "\n" + mail_settings(mailbox.port))
    with running_luigid(tmp_path, script, LUIGID_RETRY_DELAY="1") as started:
        yield started


def _nightly_under_luigid(tmp_path, luigid, synthetic_raw, mailbox, date, config) -> str:
    """The README's luigid command for the night, its workers' config with the mail block filled in too;
    its output. It must end by itself, with exit 30."""
    env = _worker_env(tmp_path, luigid, synthetic_raw)
    cfg = Path(env["LUIGI_CONFIG_PATH"])
    cfg.write_text(cfg.read_text() + "\n" + mail_settings(mailbox.port))
    worker = _luigi(_nightly(date, config), env)
    try:
        output, _ = worker.communicate(timeout=NIGHTLY_LIMIT)
    except subprocess.TimeoutExpired:
        worker.kill()
        output, _ = worker.communicate()
        pytest.fail(f"the nightly under luigid still ran after {NIGHTLY_LIMIT} s: {output[-3000:]}")
    assert worker.returncode == 30, output[-4000:]
    return output


def _disabled(luigid, family: str) -> dict[str, dict]:
    """{luigid's name for the task: its parameters} of the `family` tasks that luigid disabled."""
    found = _api(luigid["port"], "task_list", status="DISABLED", upstream_status="", search=family)
    return {task["display_name"]: task["params"] for task in sorted(found.values(), key=lambda t: t["display_name"])}


def test_under_luigid_a_regression_is_retried_once_exits_30_and_is_mailed_once(
    site, nightly_config, mailbox, mailing_luigid, tmp_path, synthetic_raw
):
    _regression_tonight(site, nightly_config)
    output = _nightly_under_luigid(tmp_path, mailing_luigid, synthetic_raw, mailbox, SECOND, nightly_config)
    report = f"NightlyReport(date={SECOND}, config={nightly_config})"
    assert output.count(f"failed    {report}") == 2, output[-4000:]  # run, retried once, then disabled
    ((disabled, params),) = _disabled(mailing_luigid, "NightlyReport").items()
    assert (params["date"], params["config"]) == (str(SECOND), str(nightly_config))
    assert mailbox.mails == [], "a worker mailed on its own; under luigid only luigid's batch mails"

    mailing_luigid["stop"]()  # luigid sends its batch now rather than at the end of email_interval
    (mail,) = mailbox.mails
    assert mail.recipients == [RECEIVER]
    assert mail.subject == f"{PREFIX}Luigi: 2 failures, 1 disable in the last 10 minutes"
    body = [line.strip() for line in mail.body.splitlines()]
    assert body[0] == f"- {disabled} (2 failures, 1 disable)", mail.body
    expected = _expected_alert(site, nightly_config)
    start = body.index(f"RegressionAlert: {expected[0]}")
    assert body[start + 1 : start + len(expected)] == expected[1:], mail.body


def test_under_luigid_the_failed_runs_of_a_night_come_in_one_mail(
    site, nightly_config, mailbox, mailing_luigid, tmp_path, synthetic_raw
):
    _block_the_nights_runs(site, FIRST)
    output = _nightly_under_luigid(tmp_path, mailing_luigid, synthetic_raw, mailbox, FIRST, nightly_config)
    assert output.count("failed    NightlyTrainRun(") == 4, output[-4000:]  # two runs, each retried once
    disabled = _disabled(mailing_luigid, "NightlyTrainRun")
    assert sorted((params["name"], params["date"]) for params in disabled.values()) == [
        ("adam", str(FIRST)),
        ("sgd", str(FIRST)),
    ]
    assert mailbox.mails == []

    mailing_luigid["stop"]()
    (mail,) = mailbox.mails
    assert mail.recipients == [RECEIVER]
    assert mail.subject == f"{PREFIX}Luigi: 4 failures, 2 disables in the last 10 minutes"
    listed = [line.strip() for line in mail.body.splitlines() if line.startswith("- ")]
    assert listed == [f"- {name} (2 failures, 1 disable)" for name in disabled], mail.body
    assert mail.body.count("StorageError: cannot write") == 2
