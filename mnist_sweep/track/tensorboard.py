"""`logger=tensorboard`: event files in the run folder, so `tensorboard --logdir <run folder>`
shows one run and `--logdir outputs/sweeps/<study>` a whole sweep, one run per trial folder.

The config goes in as the run's hyperparameters (the HParams plugin's session
start, written before the first epoch, so a run that fails still has its row),
with the final figures as the metrics its table compares trials by.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from mnist_sweep.run.record import CURVES, EpochRow, RunRecord, RunStatus
from mnist_sweep.track.base import final_figures, flatten

# Scalar tags, one chart section per figure, each with a line per split.
FIGURES = {"loss": "loss", "acc": "accuracy"}
FINAL = "final"  # the section of the figures logged once, when the run ends
# The columns of the HParams table beside the hyperparameters.
HPARAM_METRICS = (
    "accuracy/test",
    "accuracy/val",
    "loss/test",
    f"{FINAL}/params",
    f"{FINAL}/best_test_acc",
    f"{FINAL}/reached_target",
    f"{FINAL}/epochs",
)


class TensorBoardTracker:
    def __init__(self, run_dir: Path, config: dict[str, Any]) -> None:
        # A resumed run's earlier epochs are in the folder's earlier event files.
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        self.run_dir = run_dir
        self.writer = SummaryWriter(log_dir=str(run_dir))
        metrics = {tag: 0.0 for tag in HPARAM_METRICS}  # only the names are written
        experiment, session_start, _ = hparams(flatten(config), metrics)
        self.writer.file_writer.add_summary(experiment)
        self.writer.file_writer.add_summary(session_start)
        self.writer.flush()

    def log_epoch(self, row: EpochRow) -> None:
        splits = ("train", "val", "test") if row.val_acc is not None else ("train", "test")
        for key, section in FIGURES.items():
            for split in splits:
                value = getattr(row, f"{split}_{key}")
                self.writer.add_scalar(f"{section}/{split}", value, row.epoch)
        self.writer.add_scalar("lr", row.lr, row.epoch)
        self.writer.add_scalar("seconds/train", row.seconds, row.epoch)
        self.writer.add_scalar("seconds/eval", row.eval_seconds, row.epoch)
        self.writer.flush()  # a TensorBoard already watching shows each epoch as it ends

    def finish(self, record: RunRecord) -> None:
        step = record.epochs[-1].epoch if record.epochs else 0
        try:
            for name, value in final_figures(record).items():
                self.writer.add_scalar(f"{FINAL}/{name}", value, step)
            curves = self.run_dir / CURVES
            if curves.is_file():
                import matplotlib.image

                image = matplotlib.image.imread(curves)
                self.writer.add_image("curves", image, step, dataformats="HWC")
            self.writer.file_writer.add_summary(_session_end(record.status))
        finally:
            self.writer.close()


def _session_end(status: RunStatus) -> Any:
    """The HParams session's end, with how the run ended (torch's add_hparams always says
    success; tensorboard's own helper needs TensorFlow)."""
    from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
    from tensorboard.plugins.hparams import api_pb2, metadata
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData, SessionEndInfo

    # HParams has no "stopped early"; a pruned run's shorter life shows in final/epochs.
    ended_well = status in (RunStatus.COMPLETED, RunStatus.PRUNED)
    code = api_pb2.STATUS_SUCCESS if ended_well else api_pb2.STATUS_FAILURE
    if status is RunStatus.INTERRUPTED:  # stopped by a signal, not by a fault of its own
        code = api_pb2.STATUS_ABORTED
    content = HParamsPluginData(
        session_end_info=SessionEndInfo(status=code, end_time_secs=time.time()),
        version=metadata.PLUGIN_DATA_VERSION,
    )
    plugin = SummaryMetadata.PluginData(
        plugin_name=metadata.PLUGIN_NAME, content=content.SerializeToString()
    )
    value = Summary.Value(
        tag=metadata.SESSION_END_INFO_TAG, metadata=SummaryMetadata(plugin_data=plugin)
    )
    return Summary(value=[value])
