"""The synthetic "needle" long-document task (`jaxemb eval --task needle:2048`); see
`jaxemb.data.longembed`."""

from jaxemb.data import longembed

TASK = longembed.task("needle")
