"""Drawing results: skeleton overlays on images (:mod:`posekit.viz.draw`) and a small HTML report
(:mod:`posekit.viz.report`)."""
from posekit.viz.draw import draw_poses, person_colour
from posekit.viz.report import ReportItem, write_html_report

__all__ = ["draw_poses", "person_colour", "write_html_report", "ReportItem"]
