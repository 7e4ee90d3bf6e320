// Package subject validates output and client ids and maps them to NATS
// subjects.
//
// A frame for (output_id, client_id) is published to
// outputs.<oid>.<cid>. Each token is made from its id by an escaping that
// is the identity on [A-Za-z0-9_-] and writes every other byte as "~XX"
// (upper-case hex), so it is reversible, injective, and nothing in an id
// ('.', '*', '>', spaces, '%', '~') can change the subject's shape. A frame
// without client_id goes to the token Broadcast ("~all"), which no id
// escapes to: escapes are always '~' followed by two upper-case hex digits.
//
// JetStream RePublish copies every stored message to live.outputs.<oid>.<cid>,
// the subjects gateways subscribe to.
package subject
