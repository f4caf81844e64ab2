"""What a training run leaves behind and how it is read back: the model bundle
(:mod:`.bundle`: LightGBM text models, journey map, feature spec, metadata), batch scoring
with a bundle (:mod:`.scoring`), MLflow tracking and the model registry (:mod:`.tracking`,
:mod:`.mlflow_model` for models-from-code) and the model card (:mod:`.modelcard`)."""
