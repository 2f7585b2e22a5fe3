"""Read-only views of the inputs: directory trees and ISO images, the selection rules, Windows-safe names,
the download cache, and the upstream fetch and extract stages."""
