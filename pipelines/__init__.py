"""KFP pipelines built from `resumo.components`; installed as `resumo.pipelines`."""
