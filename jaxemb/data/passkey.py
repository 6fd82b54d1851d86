"""The synthetic "passkey" long-document task (`jaxemb eval --task passkey:2048`); see
`jaxemb.data.longembed`."""

from jaxemb.data import longembed

TASK = longembed.task("passkey")
