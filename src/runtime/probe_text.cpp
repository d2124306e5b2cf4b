// The accuracy probe's built-in calibration text (runtime/accuracy_probe.h).
// Written for kestrel: narrative, explanation, dialogue, lists and numbers, so
// the next-token distributions it probes are varied; no WikiText, which
// perplexity is measured on.
#include "runtime/accuracy_probe.h"

namespace kestrel {

std::string_view probe_calibration_text() {
  return R"(The lighthouse on the northern point had been dark for eleven years when Marta Ilves bought it at auction for less than the price of a used car. The roof leaked, the iron stairs had rusted through in three places, and the keeper's cottage smelled of salt and old paint. Her brother told her it was the worst decision she had ever made. She told him that was a high bar, and started making lists.

The first list was about water. Rain came from the west nine months of the year, so she cleared the gutters, patched the cistern with a lime mortar she mixed by hand, and fitted a simple filter of sand, gravel and charcoal. By the end of October the tank held almost four thousand litres, enough for a person who was careful and a little stubborn.

The second list was about light. A lens of that size, the surveyor explained, concentrates a small flame into a beam that can be seen twenty nautical miles away. "The trick is not the brightness," he said, tapping the brass frame. "It is the rotation. Every light on this coast has its own rhythm, two flashes here, three there, so a sailor can tell where he is by counting." Marta wrote the numbers down: one flash every five seconds, a period she would later hear in her sleep.

How does a rotating lens keep its timing without electricity? The old answer was clockwork. A weight hangs from a cable wound around a drum; as it falls, it turns a train of gears, and a governor with spinning arms keeps the speed steady. Someone had to climb the tower every four hours to wind it back up. The logbooks from 1931 record the keeper's name, the weather, the time of each winding, and, on one page, a drawing of a seal that had slept on the landing all afternoon.

Restoring the mechanism took most of the winter. She cleaned each gear in paraffin, replaced two worn bearings with parts copied by a machinist in town, and learned that the governor had to be balanced to within a fraction of a gram. When she finally released the brake, the lens turned once, hesitated, and then settled into its slow, patient sweep.

In spring the coast guard sent a letter. The light could not be used for navigation, they wrote, since modern ships relied on satellite positioning and the nearby channel had been marked with buoys for decades. However, they saw no objection to it being lit on holidays, provided the rhythm differed from every active light in the region. Marta chose four short flashes followed by a long dark interval, a pattern she described to her brother as "a question asked politely."

Visitors began to arrive in the summer. A school brought thirty children who counted the steps aloud, one hundred and twelve of them, and argued about whether the top landing should count. A retired engineer spent an afternoon explaining how the focal length of a lens depends on the curvature of its surfaces and the refractive index of the glass. An old woman from the village said nothing at all, climbed to the gallery, looked out at the water for a long time, and then thanked Marta for bringing the light back.

By the second year the cottage had a new roof, the stairs were safe, and the cistern had never run dry. The lists continued, though they had changed: paint for the gallery railing, a better latch for the storm door, seeds for a garden behind the wall where the wind could not reach. Each evening at dusk she climbed the tower, wound the weight, and watched the first beam cross the bay. Some nights a fishing boat answered with a blink of its deck lights, and she liked to think that the message was understood, even if neither side could have said exactly what it was.
)";
}

}  // namespace kestrel
