//! SIP message types over rsip (the only module that imports rsip).
