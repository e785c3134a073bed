"""Online serving on Ray Serve: a FastAPI ingress, a batched model deployment, a static web viewer.

`app.build_app` is the Serve application builder (`avatar-platform serve`, KubeRay RayService).
"""
