"""Export a finished 3D result as files an artist uses: a coloured mesh (.glb, .obj + .mtl),
a turntable video (.mp4) and image grids (.png).

The world frame is +y up with objects facing +z inside the unit sphere; exported meshes keep
it (glTF is +y up too). Every file is written atomically: a crash or a full disk leaves the
previous file or the new one, never half of one. trimesh, scikit-image, imageio-ffmpeg and
PIL are imported only when a function needs them.

    from dreamlift.export import extract_mesh, write_glb, write_obj, write_video
    from dreamlift.world.shapes import get_object
    mug = get_object("mug", "red")
    mesh = extract_mesh(lambda p: -mug.sdf(p), mug.albedo, resolution=128)  # a NeRF: its density, threshold ~10
    write_glb(mesh, "out/mug.glb"); write_obj(mesh, "out/mug.obj")
    write_video(turntable_frames, "out/mug.mp4", fps=24)  # (N, 3, H, W) in [0, 1]
"""

from .mesh import Mesh, extract_mesh, read_mesh, write_glb, write_obj
from .video import save_image_grid, write_video

__all__ = ["Mesh", "extract_mesh", "read_mesh", "write_glb", "write_obj", "write_video", "save_image_grid"]
