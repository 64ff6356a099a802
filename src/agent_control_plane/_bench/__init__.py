"""The benchmark's internals (`agent_control_plane.bench` is its entry point); nothing here is API."""
