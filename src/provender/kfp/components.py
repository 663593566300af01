"""Kubeflow Pipelines components: historical retrieval, offline-to-online ingestion, consistency check.

Each component is a thin wrapper over :mod:`provender.kfp.ops` and runs in the Provender image
(``BASE_IMAGE``, which must hold ``provender[kfp]``: see docs/kubernetes.md); nothing is pip-installed
when a step starts. ``config_path`` names the provender.yaml inside the step's container (a
ConfigMap mount in a cluster); empty means ``$PROVENDER_CONFIG``, then ./provender.yaml.
"""

# No `from __future__ import annotations`: kfp reads the annotations as objects.
from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from provender import __version__

# The image the steps run in: `make image-kfp` builds it (provender with the kfp extra).
BASE_IMAGE = f"localhost/provender:{__version__}-kfp"


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def historical_retrieval(
    feature_refs: list,  # type: ignore[type-arg]  # kfp reads the bare annotation
    entity_source_uri: str,
    dataset: Output[Dataset],
    config_path: str = "",
    project: str = "",
) -> int:
    """Build a point-in-time correct training set: entity source URI in, Parquet dataset out."""
    from provender.kfp.ops import retrieve_to_parquet

    summary = retrieve_to_parquet(
        feature_refs, entity_source_uri, dataset.path, config_path=config_path, project=project
    )
    dataset.metadata.update(summary)
    return summary["rows"]


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def offline_to_online_ingestion(table: str, start: str, end: str, config_path: str = "", project: str = "") -> int:
    """Write the latest value per entity key with start <= event_timestamp < end to the online store."""
    from provender.kfp.ops import ingest_to_online

    return ingest_to_online(table, start, end, config_path=config_path, project=project)["rows_written"]


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def consistency_check(
    feature_refs: list,  # type: ignore[type-arg]
    training_set: Input[Dataset],
    at: str,
    config_path: str = "",
    project: str = "",
) -> int:
    """Fail unless the online values equal the training set's rows stamped ``at``; return the rows checked."""
    from provender.kfp.ops import check_consistency

    report = check_consistency(feature_refs, training_set.path, at, config_path=config_path, project=project)
    return report["rows"]
