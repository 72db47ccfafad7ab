"""The synthetic skeleton zoo (`posebh synth`): rigs and poses (`rig`), rendering and visibility (`render`), the
datasets it holds (`spec`), native-format writers (`writers`) and the generator (`zoo`). Imports point one way:
zoo -> writers -> spec, rig; render -> rig."""
from posebh_cli.data.synth.spec import DATASETS, DatasetSpec
from posebh_cli.data.synth.zoo import synth_zoo

__all__ = ["DATASETS", "DatasetSpec", "synth_zoo"]
