"""Kubeflow Pipelines components over the SDK (``pip install 'provender[kfp]'``).

:mod:`provender.kfp.ops` holds the work as plain functions (no kfp import); the components in
:mod:`provender.kfp.components` are thin kfp wrappers around them::

    from provender.kfp.components import consistency_check, historical_retrieval, offline_to_online_ingestion

``examples/kubeflow/pipeline.py`` builds a training set, trains a model, ingests to the online
store and checks training/serving consistency with them.
"""
