"""Ray and Tune: the cluster, the trainable's resources, the search space and searchers, the Ray
tasks that encode and detect faces, MLflow's Tune callback, and every use of Ray's internals
(ray_internals)."""
