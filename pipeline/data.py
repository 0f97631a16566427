"""The data stage: FetchFile ×4 → DecodeData → PrepareData.

Each run() holds its target's lock (tasks.core.locks) and returns at once when, once the lock is held,
the target turns out complete: another command (a differently spelled one, or another host's) built it
while this one waited.
"""

from __future__ import annotations

import luigi

from pipeline.site import expected_checksums, layout, site_settings
from tasks.core.locks import DEFAULT_LOCK_TIMEOUT, target_lock
from tasks.core.storage import read_json
from tasks.data.dataset import RAW_FILE_NAMES


class LockedTarget:
    """Mixin for a task whose run() builds its one file target under that target's lock, unless it is
    complete by then. A mixin, not a Task, so that luigi lists no task family for it."""

    lock_timeout = DEFAULT_LOCK_TIMEOUT

    def run(self):
        with target_lock(self.output().path, timeout=self.lock_timeout):
            if not self.complete():  # another process may have built it while we waited for the lock
                self.build()

    def build(self):
        raise NotImplementedError


class FetchFile(LockedTarget, luigi.Task):
    """Get one published .gz file from the first source that has a verified copy."""

    name = luigi.ChoiceParameter(choices=RAW_FILE_NAMES, var_type=str)

    def output(self):
        return luigi.LocalTarget(str(layout().raw_file(self.name)))

    def build(self):
        from tasks.data.fetch import FetchLimits, fetch_raw_file

        payload_sha256, gz_md5 = expected_checksums(self.name)
        site = site_settings()
        fetch_raw_file(
            self.name,
            list(site.sources),
            layout().raw_dir,
            expected_payload_sha256=payload_sha256,
            expected_gz_md5=gz_md5,
            limits=FetchLimits(timeout=site.fetch_timeout, retries=site.fetch_retries, deadline=site.fetch_deadline),
        )


class DecodeData(LockedTarget, luigi.Task):
    """Decode and validate the four IDX files into the Arrow cache; write the data manifest last."""

    def requires(self):
        return {name: FetchFile(name=name) for name in RAW_FILE_NAMES}

    def output(self):
        return luigi.LocalTarget(str(layout().manifest))

    def build(self):
        from tasks.data.prepare import decode_dataset

        paths = layout()
        records = {name: read_json(paths.raw_record(name)) for name in RAW_FILE_NAMES}
        decode_dataset(paths, records)


class PrepareData(LockedTarget, luigi.Task):
    """The decoded arrays plus a seeded, stratified validation split of the training rows."""

    validation_per_class = luigi.IntParameter(default=600)
    split_seed = luigi.IntParameter(default=0)

    def requires(self):
        return DecodeData()

    def output(self):
        return luigi.LocalTarget(str(layout().split_arrow(self.validation_per_class, self.split_seed)))

    def build(self):
        from tasks.data.prepare import make_split

        make_split(layout(), self.validation_per_class, self.split_seed)


class VerifyData(luigi.Task):
    """Before a night's training: re-verify the raw files, the Arrow cache and the splits (sha256 of files)."""

    date = luigi.DateParameter()

    def requires(self):
        return DecodeData()

    def output(self):
        return luigi.LocalTarget(str(layout().verified_record(self.date.isoformat())))

    def run(self):
        from tasks.data.verify import verify_data

        paths = layout()
        expected = {name: expected_checksums(name)[0] for name in RAW_FILE_NAMES}
        with target_lock(paths.manifest):  # DecodeData writes the arrays and the manifest under this lock
            verify_data(paths, expected, self.date.isoformat())
