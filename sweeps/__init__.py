"""The sweep system: grids as data, Ray Tune trials that train, MLflow runs that record."""
