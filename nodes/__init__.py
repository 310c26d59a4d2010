"""ComfyUI node adapters. Thin: graph plumbing only, the maths lives in lipsync_core."""

NODE_CLASS_MAPPINGS: dict[str, type] = {}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {}
