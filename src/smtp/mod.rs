//! Mail transport: the outbound queue's transports (SMTP relay, outbox folder) and the
//! LMTP server that receives iMIP mail from the MTA. Under construction.
