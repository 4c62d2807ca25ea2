// rtc.js: WebRTC helpers for the softphone. The browser is always the offerer and does not
// trickle: it gathers every ICE candidate first, then sends one complete SDP offer.

const GATHER_TIMEOUT_MS = 3000;

/** The microphone, or null (with the reason logged) when there is none or it is refused. */
export async function openMic(log) {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    log('no getUserMedia here (the page needs http://localhost or https)');
    return null;
  }
  try {
    // Echo cancellation stays on (speakers), but no noise suppression or automatic gain:
    // they fade out steady tones within seconds, and this phone is for testing telephony.
    return await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: false, autoGainControl: false },
      video: false,
    });
  } catch (err) {
    log(`microphone unavailable (${err.name || 'error'}: ${err.message}); the call will only listen`);
    return null;
  }
}

/**
 * A peer connection sending the mic (or receive-only without one).
 * onTrack(stream) is called with the remote audio stream.
 */
export function createPeer(localStream, { onTrack, onStateChange } = {}) {
  const pc = new RTCPeerConnection({ iceServers: [] });
  if (localStream && localStream.getAudioTracks().length) {
    for (const track of localStream.getAudioTracks()) pc.addTrack(track, localStream);
  } else {
    pc.addTransceiver('audio', { direction: 'recvonly' });
  }
  pc.addEventListener('track', (ev) => {
    const stream = ev.streams && ev.streams[0] ? ev.streams[0] : new MediaStream([ev.track]);
    if (onTrack) onTrack(stream, ev.track);
  });
  if (onStateChange) {
    pc.addEventListener('connectionstatechange', () => onStateChange(pc.connectionState));
  }
  return pc;
}

/** createOffer + setLocalDescription, wait for ICE gathering to complete (or 3 s), return the SDP. */
export async function completeOffer(pc) {
  const offer = await pc.createOffer();
  await pc.setLocalDescription(offer);
  await gathered(pc, GATHER_TIMEOUT_MS);
  if (pc.signalingState === 'closed') throw new Error('the call was closed');
  return pc.localDescription.sdp;
}

function gathered(pc, ms) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      pc.removeEventListener('icegatheringstatechange', check);
      pc.removeEventListener('icecandidate', onCandidate);
      resolve();
    };
    const check = () => { if (pc.iceGatheringState === 'complete') done(); };
    // Some browsers signal the end only with a null candidate.
    const onCandidate = (ev) => { if (!ev.candidate) done(); };
    const timer = setTimeout(done, ms);
    pc.addEventListener('icegatheringstatechange', check);
    pc.addEventListener('icecandidate', onCandidate);
  });
}
